"""Onboarding against real homeservers: accounts are created, activated, locked, deactivated.

The bridge database runs on SQLite and PostgreSQL; the homeserver is hs_a (shared by the
session, hence fresh RPPS numbers and names per test).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
import sqlalchemy as sa

from bridge.admin import audit
from bridge.admin.bulk_handler import onboard_file
from bridge.admin.departed import list_departed, lock_departed
from bridge.admin.handlers import activate, activation_account, offboard, onboard, set_locked
from bridge.admin.model import Actor, AdminError
from bridge.admin.services import AdminServices
from bridge.db import Database
from bridge.synapse_admin import SynapseAdmin, SynapseAdminError
from deploy.local.federation import Homeserver
from tests.admin_support import (
    add_practitioner,
    bridge_database,
    import_register,
    random_rpps,
    secret_of,
    services_for,
    strike_off,
)
from tests.matrix_helpers import ENCRYPTION, eventually

pytestmark = pytest.mark.slow
ADMIN = Actor("@root:admin.test")
PASSWORD = "correct horse battery staple"


@pytest_asyncio.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    async with bridge_database(request.param, tmp_path) as opened:
        yield opened


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def services(db: Database, http: aiohttp.ClientSession, hs_a: Homeserver) -> AdminServices:
    return services_for(db, http, hs_a)


def surname() -> str:
    """A last name nobody else in the session has (localparts derive from names)."""
    return "TEST" + uuid.uuid4().hex[:6].upper()


async def onboarded_and_activated(
    services: AdminServices, hs: Homeserver, http: aiohttp.ClientSession, last: str
) -> tuple[str, str]:
    rpps = random_rpps()
    await add_practitioner(services.db, rpps, "JEANNE", last)
    done = await onboard(services, ADMIN, rpps)
    await activate(services, secret_of(done.activation_url), PASSWORD)
    return rpps, done.matrix_id


async def test_onboarded_practitioner_activates_their_account_and_signs_in(
    services: AdminServices, hs_a: Homeserver, http: aiohttp.ClientSession
) -> None:
    rpps, last = random_rpps(), surname()
    await add_practitioner(services.db, rpps, "ANNE-SOPHIE", last)

    done = await onboard(services, ADMIN, rpps)

    assert done.matrix_id == f"@anne-sophie.{last.lower()}:{hs_a.server_name}"
    assert done.display_name == f"Dr Anne-Sophie {last}"
    client = SynapseAdmin(http, hs_a.client_url, hs_a.admin_token)
    details = await client.get_user(done.matrix_id)
    assert details is not None and details["displayname"] == done.display_name
    with pytest.raises(SynapseAdminError):  # no password until the practitioner chooses one
        await client.login(done.matrix_id, PASSWORD)
    secret = secret_of(done.activation_url)
    assert await activation_account(services, secret) == done.matrix_id

    assert await activate(services, secret, PASSWORD) == done.matrix_id

    session = await client.login(done.matrix_id, PASSWORD)
    assert await client.whoami(session.access_token) == done.matrix_id
    with pytest.raises(AdminError, match="already used"):
        await activation_account(services, secret)
    with pytest.raises(AdminError, match="not valid"):
        await activate(services, secret, "another long passphrase")
    async with services.db.sessions() as s:
        linked = await s.scalar(
            sa.text("SELECT matrix_id FROM directory_link WHERE rpps = :r"), {"r": rpps}
        )
        entries = await audit.recent(s, limit=5)
        stored = await s.scalar(sa.text("SELECT COUNT(*) FROM admin_activation"))
    assert linked == done.matrix_id
    assert [(e.action, e.actor, e.target) for e in entries[:2]] == [
        ("activate", done.matrix_id, done.matrix_id),
        ("onboard", ADMIN, done.matrix_id),
    ]
    assert entries[1].detail == {"homeserver": hs_a.server_name, "rpps": rpps, "visible": False}
    assert stored == 1
    dump = repr([e.detail for e in entries])
    assert secret not in dump and PASSWORD not in dump


async def test_homonyms_get_numbered_ids_and_duplicates_are_refused(
    services: AdminServices, hs_a: Homeserver
) -> None:
    last = surname()
    first, second = random_rpps(), random_rpps()
    await add_practitioner(services.db, first, "PAUL", last)
    await add_practitioner(services.db, second, "PAUL", last)

    one = await onboard(services, ADMIN, first)
    two = await onboard(services, ADMIN, second)

    assert one.matrix_id == f"@paul.{last.lower()}:{hs_a.server_name}"
    assert two.matrix_id == f"@paul.{last.lower()}2:{hs_a.server_name}"
    with pytest.raises(AdminError, match="already onboarded as") as info:
        await onboard(services, ADMIN, first)
    assert info.value.kind == "conflict"
    with pytest.raises(AdminError, match="not in the directory") as info:
        await onboard(services, ADMIN, random_rpps())
    assert info.value.kind == "not_found"
    with pytest.raises(AdminError, match="not a homeserver this bridge manages"):
        await onboard(services, ADMIN, first, server_name="elsewhere.test")


async def test_expired_activation_links_are_refused(services: AdminServices) -> None:
    rpps = random_rpps()
    await add_practitioner(services.db, rpps, "LUC", surname())
    done = await onboard(services, ADMIN, rpps)
    services.now = lambda: done.expires_at + timedelta(seconds=1)
    with pytest.raises(AdminError, match="expired"):
        await activate(services, secret_of(done.activation_url), PASSWORD)


async def test_offboarding_deactivates_leaves_rooms_and_unlinks(
    services: AdminServices, hs_a: Homeserver, http: aiohttp.ClientSession
) -> None:
    rpps, matrix_id = await onboarded_and_activated(services, hs_a, http, surname())
    client = SynapseAdmin(http, hs_a.client_url, hs_a.admin_token)
    session = await client.login(matrix_id, PASSWORD)
    async with http.post(
        f"{hs_a.client_url}/_matrix/client/v3/createRoom",
        headers={"Authorization": f"Bearer {session.access_token}"},
        json={"preset": "private_chat", "initial_state": [ENCRYPTION]},
    ) as response:
        assert response.status == 200, await response.text()
    assert len(await client.joined_rooms(matrix_id)) == 1

    done = await offboard(services, ADMIN, matrix_id)

    assert (done.rpps, done.rooms) == (rpps, 1)
    details = await client.get_user(matrix_id)
    assert details is not None and details["deactivated"] is True
    with pytest.raises(SynapseAdminError):
        await client.login(matrix_id, PASSWORD)

    async def left() -> bool | None:
        return True if await client.joined_rooms(matrix_id) == [] else None

    await eventually(left)
    async with services.db.sessions() as s:
        link = await s.scalar(
            sa.text("SELECT COUNT(*) FROM directory_link WHERE rpps = :r"), {"r": rpps}
        )
        entry = (await audit.recent(s, limit=1))[0]
    assert link == 0
    assert (entry.action, entry.target, entry.detail["rooms"]) == ("offboard", matrix_id, 1)
    with pytest.raises(AdminError, match="does not exist"):
        await offboard(services, ADMIN, f"@nobody-{uuid.uuid4().hex[:6]}:{hs_a.server_name}")
    with pytest.raises(AdminError, match="not a Matrix ID"):
        await offboard(services, ADMIN, "jeanne")


async def test_practitioners_who_left_the_register_are_locked_and_listed(
    services: AdminServices, hs_a: Homeserver, http: aiohttp.ClientSession
) -> None:
    rpps, matrix_id = await onboarded_and_activated(services, hs_a, http, surname())
    stays_rpps, stays = await onboarded_and_activated(services, hs_a, http, surname())
    client = SynapseAdmin(http, hs_a.client_url, hs_a.admin_token)
    session = await client.login(matrix_id, PASSWORD)

    await strike_off(services.db, rpps)
    [listed] = await list_departed(services)
    assert (listed.matrix_id, listed.state, listed.locked_now) == (matrix_id, "active", False)

    [departed] = await lock_departed(services, ADMIN)

    assert (departed.rpps, departed.matrix_id, departed.locked_now) == (rpps, matrix_id, True)
    assert departed.name.startswith("JEANNE ")
    with pytest.raises(SynapseAdminError) as info:
        await client.whoami(session.access_token)
    assert info.value.errcode == "M_USER_LOCKED"
    other = await client.login(stays, PASSWORD)  # the other one is untouched
    assert await client.whoami(other.access_token) == stays
    [again] = await lock_departed(services, ADMIN)
    assert (again.state, again.locked_now) == ("locked", False)
    async with services.db.sessions() as s:
        locks = await audit.recent(s, action="lock")
        still_linked = await s.scalar(
            sa.text("SELECT COUNT(*) FROM directory_link WHERE rpps = :r"), {"r": rpps}
        )
    assert [(e.target, e.detail["reason"]) for e in locks] == [(matrix_id, "left the register")]
    assert still_linked == 1  # no silent deletion: the admin decides to offboard

    await set_locked(services, ADMIN, matrix_id, locked=False)
    assert await client.whoami(session.access_token) == matrix_id
    assert stays_rpps != rpps


async def test_bulk_file_with_a_bad_line_changes_nothing(
    services: AdminServices, hs_a: Homeserver, http: aiohttp.ClientSession
) -> None:
    last = surname()
    good, unknown = random_rpps(), random_rpps()
    await add_practitioner(services.db, good, "MARC", last)
    await add_practitioner(services.db, (homonym := random_rpps()), "MARC", last)
    text = f"rpps;homeserver\n{good};\n{unknown};\n{homonym};{hs_a.server_name}\n"

    report = await onboard_file(services, ADMIN, text, dry_run=False)

    assert [str(e) for e in report.errors] == [
        f"line 3: RPPS {unknown} is not in the directory (is the register imported?)"
    ]
    assert report.changed_nothing
    client = SynapseAdmin(http, hs_a.client_url, hs_a.admin_token)
    first_id = f"@marc.{last.lower()}:{hs_a.server_name}"
    assert await client.get_user(first_id) is None

    fixed = text.replace(f"{unknown};\n", "")
    plan = await onboard_file(services, ADMIN, fixed, dry_run=True)
    assert plan.errors == [] and plan.changed_nothing
    assert [(p.line, p.matrix_id) for p in plan.planned] == [
        (2, first_id),
        (3, f"@marc.{last.lower()}2:{hs_a.server_name}"),
    ]
    assert await client.get_user(first_id) is None

    report = await onboard_file(services, ADMIN, fixed, dry_run=False)
    assert [(n, d.matrix_id) for n, d in report.onboarded] == [
        (p.line, p.matrix_id) for p in plan.planned
    ]
    assert await client.get_user(first_id) is not None
    async with services.db.sessions() as s:
        [entry] = await audit.recent(s, action="onboard_file")
    assert entry.detail["practitioners"] == 2


async def test_unreachable_homeserver_is_a_clear_error(
    db: Database, http: aiohttp.ClientSession
) -> None:
    services = AdminServices(
        db=db,
        homeservers={"down.test": SynapseAdmin(http, "http://127.0.0.1:9", "x")},
        default_server="down.test",
        public_url="http://bridge.test",
    )
    rpps = random_rpps()
    await add_practitioner(db, rpps, "EVE", surname())
    with pytest.raises(AdminError, match=r"cannot reach the homeserver down\.test") as info:
        await onboard(services, ADMIN, rpps)
    assert info.value.kind == "unavailable"


async def test_reimport_without_a_practitioner_locks_their_account(
    services: AdminServices, hs_a: Homeserver, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    leaving, staying = random_rpps(), random_rpps()
    last_leaving, last_staying = surname(), surname()
    await import_register(
        services.db, tmp_path, [(leaving, last_leaving, "ROSE"), (staying, last_staying, "IRIS")]
    )
    gone = await onboard(services, ADMIN, leaving)
    kept = await onboard(services, ADMIN, staying)

    await import_register(services.db, tmp_path, [(staying, last_staying, "IRIS")])
    departed = await lock_departed(services, ADMIN)

    assert [(d.matrix_id, d.name, d.locked_now) for d in departed] == [
        (gone.matrix_id, f"ROSE {last_leaving}", True)
    ]
    client = SynapseAdmin(http, hs_a.client_url, hs_a.admin_token)
    locked = await client.get_user(gone.matrix_id)
    untouched = await client.get_user(kept.matrix_id)
    assert locked is not None and locked["locked"] is True
    assert untouched is not None and untouched["locked"] is False


async def test_a_service_account_is_exempted_from_rate_limits_by_an_admin_only(
    hs_a: Homeserver,
) -> None:
    """What the deployment does for the bot: the override, set with the server admin's token;
    the account itself cannot set it, and stays an ordinary account."""
    user = await hs_a.register_user(f"svc-{uuid.uuid4().hex[:8]}", "service password")
    async with aiohttp.ClientSession() as http:
        admin = SynapseAdmin(http, hs_a.client_url, hs_a.admin_token)
        assert await admin.rate_limit_override(user.user_id) == {}
        with pytest.raises(SynapseAdminError) as refused:
            await SynapseAdmin(http, hs_a.client_url, user.access_token).exempt_from_rate_limits(
                user.user_id
            )
        assert refused.value.status == 403
        await admin.exempt_from_rate_limits(user.user_id)
        await admin.exempt_from_rate_limits(user.user_id)  # idempotent
        assert await admin.rate_limit_override(user.user_id) == {
            "messages_per_second": 0,
            "burst_count": 0,
        }
        account = await admin.get_user(user.user_id)
        assert account is not None and not account["admin"]
