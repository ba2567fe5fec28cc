"""The bridge's side of Pro Santé Connect sign-in: who may call the admission endpoint, and
the `members` rule both ways on SQLite and PostgreSQL, against a real homeserver (hs_a) for
the free-ID lookup. (The `register` rule runs end to end in test_psc_signin.py.)"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from bridge.admin import directory, handlers
from bridge.admin.model import Actor
from bridge.admin.psc_signin import AdmitRequest, admit
from bridge.admin.services import AdminServices
from bridge.db import Database
from bridge.http.psc_routes import ADMIT_PATH
from bridge.psc.settings import PscSettings
from deploy.local.federation import Homeserver
from tests.admin_support import add_practitioner, bridge_database, random_rpps, services_for
from tests.bridge_http_support import SERVICE_TOKEN, bridge_config, running_bridge
from tests.test_bridge_http import openapi_validator

SYNAPSE_TOKEN = "psc-" + secrets.token_hex(24)


@pytest_asyncio.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    async with bridge_database(request.param, tmp_path) as opened:
        yield opened


@pytest_asyncio.fixture
async def services(db: Database, hs_a: Homeserver) -> AsyncIterator[AdminServices]:
    async with aiohttp.ClientSession() as http:
        yield services_for(db, http, hs_a)


async def test_only_the_homeservers_token_may_ask(tmp_path: Path) -> None:
    tokens = [
        {"name": "bot", "token": SERVICE_TOKEN},
        {"name": "synapse-psc", "token": SYNAPSE_TOKEN},
    ]
    body = {"identifier": random_rpps(), "acr": "eidas1", "server_name": "clinic.test"}
    config = bridge_config(tmp_path, service_tokens=tokens, psc={"admission": "register"})
    async with running_bridge(config) as client:
        assert (await client.post(ADMIT_PATH, json=body)).status == 401
        bot = {"Authorization": f"Bearer {SERVICE_TOKEN}"}
        assert (await client.post(ADMIT_PATH, json=body, headers=bot)).status == 403
        synapse = {"Authorization": f"Bearer {SYNAPSE_TOKEN}"}
        for bad in ({**body, "identifier": "8" + body["identifier"]}, {**body, "acr": 1}, [1]):
            answer = await client.post(ADMIT_PATH, json=bad, headers=synapse)
            assert answer.status == 400, await answer.text()
        raw = await client.post(ADMIT_PATH, data=b"{", headers=synapse)
        assert raw.status == 400 and "Traceback" not in await raw.text()
        # Unknown identifier: an answer, not an error (the module shows its message).
        answer = await client.post(ADMIT_PATH, json=body, headers=synapse)
        assert answer.status == 200
        assert (await answer.json())["reason"] == "unknown_identifier"
        openapi_validator("PscAdmitAnswer").validate(await answer.json())
        openapi_validator("PscAdmitRequest").validate(body)
    without = bridge_config(tmp_path / "off", service_tokens=tokens)
    async with running_bridge(without) as client:
        answer = await client.post(ADMIT_PATH, json=body, headers=synapse)
        assert answer.status == 404


async def test_members_rule_admits_listed_and_onboarded_practitioners_only(
    services: AdminServices, hs_a: Homeserver
) -> None:
    listed, stranger, onboarded = random_rpps(), random_rpps(), random_rpps()
    last = "PSC" + uuid.uuid4().hex[:6].upper()
    for rpps, first in ((listed, "LISTÉE"), (stranger, "ÉTRANGER"), (onboarded, "MEMBRE")):
        await add_practitioner(services.db, rpps, first, last)
    settings = PscSettings(admission="members", members=(listed,))

    def ask(rpps: str) -> AdmitRequest:
        return AdmitRequest(rpps, "eidas1", hs_a.server_name)

    refused = await admit(services, settings, ask(stranger))
    assert refused["decision"] == "refuse" and refused["reason"] == "not_member"
    assert "réservée à ses membres" in refused["message"] and "members only" in refused["message"]

    new = await admit(services, settings, ask(listed))
    assert new["decision"] == "admit" and new["new_account"] is True
    assert new["matrix_id"] == f"@listee.{last.lower()}:{hs_a.server_name}"
    async with services.db.sessions() as session:
        assert await directory.link_of_rpps(session, listed) == new["matrix_id"]

    member = await handlers.onboard(services, Actor("cli:test"), onboarded)
    existing = await admit(services, settings, ask(onboarded))
    assert (existing["matrix_id"], existing["new_account"]) == (member.matrix_id, False)

    from bridge.admin import audit

    async with services.db.sessions() as session:
        entries = await audit.recent(session, action="psc_signin")
    outcomes = {(e.detail["rpps"], e.outcome, e.detail.get("reason")) for e in entries}
    assert outcomes == {
        (stranger, "refused", "not_member"),
        (listed, "ok", None),
        (onboarded, "ok", None),
    }
    for entry in entries:
        assert entry.actor.startswith("psc:")
        assert set(entry.detail) <= {"rpps", "acr", "homeserver", "reason", "new_account"}


async def test_simultaneous_first_sign_ins_share_one_account(
    services: AdminServices, hs_a: Homeserver
) -> None:
    import asyncio

    rpps = random_rpps()
    await add_practitioner(services.db, rpps, "DOUBLE", "PSC" + uuid.uuid4().hex[:6].upper())
    settings = PscSettings(admission="register")
    request = AdmitRequest(rpps, "eidas1", hs_a.server_name)
    answers = await asyncio.gather(*(admit(services, settings, request) for _ in range(3)))
    assert len({a["matrix_id"] for a in answers}) == 1
    assert sorted(a["new_account"] for a in answers) == [False, False, True]
    from bridge.admin import audit

    async with services.db.sessions() as session:
        entries = [
            e for e in await audit.recent(session, action="psc_signin") if e.detail["rpps"] == rpps
        ]
    assert sorted(e.detail["new_account"] for e in entries) == [False, False, True]


async def test_register_rule_opens_accounts_to_the_configured_professions_only(
    services: AdminServices, hs_a: Homeserver
) -> None:
    """Doctors by default; a federation that lists nurses (`60`) lets them in too. The refusal
    is audited with its reason, and nothing is linked for the refused practitioner."""
    import sqlalchemy as sa

    from bridge.admin import audit

    nurse = random_rpps()
    await add_practitioner(services.db, nurse, "CLAIRE", "PSC" + uuid.uuid4().hex[:6].upper())
    async with services.db.sessions.begin() as session:
        await session.execute(
            sa.text("UPDATE directory_practitioner SET profession_code = '60' WHERE rpps = :r"),
            {"r": nurse},
        )
    request = AdmitRequest(nurse, "eidas1", hs_a.server_name)

    refused = await admit(services, PscSettings(admission="register"), request)
    assert (refused["decision"], refused["reason"]) == ("refuse", "profession_not_admitted")
    async with services.db.sessions() as session:
        assert await directory.link_of_rpps(session, nurse) is None

    nurses_too = PscSettings(admission="register", professions=("10", "60"))
    admitted = await admit(services, nurses_too, request)
    assert admitted["decision"] == "admit" and admitted["new_account"] is True
    async with services.db.sessions() as session:
        assert await directory.link_of_rpps(session, nurse) == admitted["matrix_id"]
        entries = [
            e for e in await audit.recent(session, action="psc_signin") if e.detail["rpps"] == nurse
        ]
    assert sorted((e.outcome, e.detail.get("reason")) for e in entries) == [
        ("ok", None),
        ("refused", "profession_not_admitted"),
    ]
