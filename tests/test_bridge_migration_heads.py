"""The bridge's schema history stays one line: helpers adding migrations at the same time
must chain them, or `open_database` would refuse to upgrade ("multiple heads")."""

from __future__ import annotations

from alembic.script import ScriptDirectory

from bridge.db import alembic_config


def test_bridge_migrations_have_a_single_head() -> None:
    script = ScriptDirectory.from_config(alembic_config())
    heads = script.get_heads()
    assert len(heads) == 1, f"several migration heads {heads}: chain the newest down_revision"
    assert len(script.get_bases()) == 1
