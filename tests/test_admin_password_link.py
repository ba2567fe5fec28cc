"""`caducee admin password-link` as an admin runs it: a new one-time password link for a
practitioner's account (an account opened by a Pro Santé Connect sign-in has no password, and
Element X signs in only with one). Mistakes are one line, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.db import open_database
from deploy.local.federation import Homeserver
from tests.admin_support import add_practitioner, random_rpps
from tests.test_admin_cli import caducee_admin, write_config

pytestmark = pytest.mark.slow


async def test_password_link_replaces_the_link_and_refuses_non_practitioners(
    tmp_path: Path, hs_a: Homeserver
) -> None:
    config = write_config(tmp_path, hs_a)
    rpps = random_rpps()
    db = await open_database(f"sqlite:///{tmp_path / 'bridge.db'}", create=True)
    try:
        await add_practitioner(db, rpps, "NOÉ", "LIEN" + rpps[-5:])
    finally:
        await db.close()
    code, out, err = await caducee_admin("onboard", rpps, "-c", str(config))
    assert code == 0, err
    matrix_id = f"@noe.lien{rpps[-5:]}:{hs_a.server_name}"
    first = next(line.strip() for line in out.splitlines() if "/activate?token=" in line)

    code, out, err = await caducee_admin("password-link", matrix_id, "-c", str(config))
    assert (code, err) == (0, ""), err
    assert f"Password link for {matrix_id} (RPPS {rpps})" in out
    assert "earlier links no longer work" in out
    link = next(line.strip() for line in out.splitlines() if "/activate?token=" in line)
    assert link.startswith("https://bridge.example.test/activate?token=") and link != first

    code, out, _ = await caducee_admin("audit", "--limit", "5", "-c", str(config))
    [line] = [ln for ln in out.splitlines() if " password_link " in ln]
    assert "cli:" in line and matrix_id in line and f"rpps={rpps}" in line
    assert link.partition("token=")[2] not in out

    # The server admin's account is no practitioner's: an action that cannot be done (1).
    admin_id = f"@admin:{hs_a.server_name}"
    code, _, err = await caducee_admin("password-link", admin_id, "-c", str(config))
    assert code == 1 and err.strip() == (
        f"Error: {admin_id} is not a practitioner's account (no RPPS is linked to it)"
    )
    code, _, err = await caducee_admin("password-link", "jeanne", "-c", str(config))
    assert code == 2 and err.startswith("Error: 'jeanne' is not a Matrix ID"), err
    assert "Traceback" not in err
