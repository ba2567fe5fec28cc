"""The registry's tables (schema defined by migration 0003_registry; these only query them).

- `registry_member`: member organisations of this federation.
- `registry_homeserver`: their homeservers (a server belongs to one member).
- `registry_peer`: federations we trust, pinned by key fingerprint, with what their last
  accepted manifest said (its homeservers as a JSON list) and how the last fetch went.
- `registry_state`: one row, the version of our own manifest and the digest of its content.
"""

from __future__ import annotations

import sqlalchemy as sa

from bridge.db import metadata

member = sa.Table(
    "registry_member",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
)

homeserver = sa.Table(
    "registry_homeserver",
    metadata,
    sa.Column("server_name", sa.String(255), primary_key=True),
    sa.Column(
        "member_id",
        sa.Integer(),
        sa.ForeignKey("registry_member.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
)

peer = sa.Table(
    "registry_peer",
    metadata,
    sa.Column("url", sa.String(500), primary_key=True),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("name", sa.String(200), nullable=True),
    sa.Column("version", sa.Integer(), nullable=True),
    sa.Column("homeservers", sa.Text(), nullable=True),
    sa.Column("verified_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("checked_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("problem", sa.String(500), nullable=True),
)

state = sa.Table(
    "registry_state",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
    sa.Column("version", sa.Integer(), nullable=False),
    sa.Column("content_digest", sa.String(64), nullable=False),
    sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
)
