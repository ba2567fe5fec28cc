"""The bot's report of pending identity resets, as the bridge takes it (no homeserver).

The real bridge application and the bot's real `ResetReporter` talk over loopback HTTP; the
claims against real Synapse, with a real bot and the console in a browser, are in
test_identity_resets_console.py.
"""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web

from bot.crypto.keyfiles import PendingReset as BotPending
from bot.identity.report import ResetReporter, report_body
from bridge.admin import audit
from bridge.config import BridgeConfig
from bridge.db import Database
from bridge.http.app import create_app
from bridge.http.keys import DATABASE
from bridge.identity_resets.model import ReportError, parse_report
from bridge.identity_resets.routes import REPORT_PATH
from bridge.identity_resets.store import (
    ENDED_ACTION,
    PENDING_ACTION,
    latest_reports,
    save_report,
)
from tests.admin_support import bridge_database
from tests.bridge_http_support import (
    OTHER_SERVICE_TOKEN,
    SERVICE_TOKEN,
    OpenIdIssuer,
    bridge_config,
    init_database,
    running_bridge,
    running_issuer,
)
from tests.conftest import free_port
from tests.matrix_helpers import eventually
from tests.test_bridge_http import openapi_validator

BOT = {"Authorization": f"Bearer {SERVICE_TOKEN}"}
DOCTOR = "@dr.martin:clinic.test"
OTHER = "@dr.petit:clinic.test"


def key() -> str:
    """A fresh public Ed25519 key as Matrix writes it."""
    return base64.b64encode(os.urandom(32)).decode().rstrip("=")


def entry(user_id: str, master: str, since_ms: int = 1_760_000_000_000) -> dict[str, Any]:
    return {
        "user_id": user_id,
        "since_ms": since_ms,
        "master_key": master,
        "pinned_master_key": key(),
    }


def report(*pending: dict[str, Any], **resolved: str) -> dict[str, Any]:
    return {
        "bot": "@caducee:clinic.test",
        "pending": list(pending),
        "resolved": [{"user_id": u, "outcome": o} for u, o in resolved.items()],
    }


async def audit_lines(app: web.Application) -> list[tuple[str, str | None, str]]:
    async with app[DATABASE].sessions() as s:
        entries = await audit.recent(s, limit=100)
    return [(e.action, e.target, e.detail_text()) for e in reversed(entries)]


async def test_each_reset_is_audited_once_when_it_appears_and_once_when_it_ends(
    tmp_path: Path,
) -> None:
    first, second = key(), key()
    async with running_bridge(bridge_config(tmp_path)) as client:
        app = client.app
        for _ in range(2):  # the bot repeats its list (at start, after a retry): no new line
            answer = await client.put(REPORT_PATH, json=report(entry(DOCTOR, first)), headers=BOT)
            assert answer.status == 200, await answer.text()
        assert await answer.json() == {"pending": 1, "new": 0, "ended": 0}
        # A second reset while the first is pending is a new key to check: audited again.
        both = report(entry(DOCTOR, second), entry(OTHER, key()))
        assert (await client.put(REPORT_PATH, json=both, headers=BOT)).status == 200
        async with app[DATABASE].sessions() as s:
            (kept,) = await latest_reports(s)
        assert kept.bot_user_id == "@caducee:clinic.test" and kept.reporter == "bot"
        assert {p.user_id: p.master_key for p in kept.pending}[DOCTOR] == second

        ended = report(**{DOCTOR: "accepted-by-operator"})  # OTHER left without a word
        answer = await client.put(REPORT_PATH, json=ended, headers=BOT)
        assert await answer.json() == {"pending": 0, "new": 0, "ended": 2}
        async with app[DATABASE].sessions() as s:
            (kept,) = await latest_reports(s)
        assert kept.pending == ()

        lines = await audit_lines(app)
    assert [(a, t) for a, t, _ in lines] == [
        (PENDING_ACTION, DOCTOR),
        (PENDING_ACTION, DOCTOR),
        (PENDING_ACTION, OTHER),
        (ENDED_ACTION, DOCTOR),
        (ENDED_ACTION, OTHER),
    ]
    assert first in lines[0][2] and second in lines[1][2]
    assert "how=accepted-by-operator" in lines[3][2]
    assert "how=no-longer-pending" in lines[4][2]
    assert SERVICE_TOKEN not in str(lines)


async def test_only_the_bots_service_token_may_report(tmp_path: Path) -> None:
    issuer = OpenIdIssuer(tokens={"user-token": DOCTOR})
    async with running_issuer(issuer) as issuer_url:
        config = bridge_config(tmp_path, homeserver_url=issuer_url)
        async with running_bridge(config) as client:
            body = report(entry(DOCTOR, key()))
            nobody = await client.put(REPORT_PATH, json=body)
            assert nobody.status == 401
            assert (await nobody.json())["errcode"] == "M_MISSING_TOKEN"
            unknown = await client.put(REPORT_PATH, json=body, headers=bearer("z" * 64))
            assert unknown.status == 401
            for token in (OTHER_SERVICE_TOKEN, "user-token"):  # another service, a doctor
                refused = await client.put(REPORT_PATH, json=body, headers=bearer(token))
                assert refused.status == 403, token
                assert (await refused.json())["errcode"] == "M_FORBIDDEN"
            async with client.app[DATABASE].sessions() as s:
                assert await latest_reports(s) == []
                assert await audit.recent(s) == []


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_without_a_bot_service_token_nobody_may_report(tmp_path: Path) -> None:
    async with running_bridge(bridge_config(tmp_path, bot_service_token=None)) as client:
        refused = await client.put(REPORT_PATH, json=report(), headers=BOT)
        assert refused.status == 403


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ([], "JSON object"),
        ({"bot": "caducee", "pending": []}, "bot must be a Matrix user ID"),
        ({"bot": "@b:x", "pending": {}}, "pending must be a list"),
        ({"bot": "@b:x", "pending": [{"user_id": "@a:x", "since_ms": 1}]}, "master_key"),
        ({"bot": "@b:x", "pending": [entry("@a:x", "short")]}, "master_key"),
        ({"bot": "@b:x", "pending": [entry("@a:x", key(), since_ms=-1)]}, "since_ms"),
        ({"bot": "@b:x", "pending": [{**entry("@a:x", key()), "since_ms": True}]}, "since_ms"),
        ({"bot": "@b:x", "pending": [entry("@a:x", key())] * 2}, "twice"),
        (
            {"bot": "@b:x", "pending": [], "resolved": [{"user_id": "@a:x", "outcome": "x"}]},
            "outcome",
        ),
    ],
)
def test_a_malformed_report_is_refused_with_the_field_named(body: Any, problem: str) -> None:
    with pytest.raises(ReportError, match=problem):
        parse_report(body)


async def test_a_malformed_report_changes_nothing(tmp_path: Path) -> None:
    async with running_bridge(bridge_config(tmp_path)) as client:
        answer = await client.put(REPORT_PATH, data=b"not json", headers=BOT)
        assert answer.status == 400 and (await answer.json())["errcode"] == "M_INVALID_PARAM"
        answer = await client.put(REPORT_PATH, json={"bot": "@b:x", "pending": [1]}, headers=BOT)
        assert answer.status == 400
        assert "pending[0] must be an object" in (await answer.json())["error"]
        async with client.app[DATABASE].sessions() as s:
            assert await latest_reports(s) == []


def test_what_the_bot_sends_is_what_the_bridge_documents_and_reads() -> None:
    pending = [BotPending(DOCTOR, key(), key(), 1_760_000_000_000), BotPending(OTHER, "", key(), 5)]
    body = report_body(
        "@caducee:clinic.test", pending, {"@gone:clinic.test": "confirmed-by-session"}
    )
    openapi_validator("IdentityResetReport").validate(body)
    parsed = parse_report(body)
    assert [(p.user_id, p.master_key, p.pinned_master_key) for p in parsed.pending] == [
        (DOCTOR, pending[0].seen, pending[0].pinned),
        (OTHER, pending[1].seen, ""),
    ]
    assert parsed.resolved == {"@gone:clinic.test": "confirmed-by-session"}


async def test_the_bot_retries_while_the_bridge_is_down_and_never_waits_for_it(
    tmp_path: Path,
) -> None:
    """`changed()` returns at once; the list reaches the bridge once it listens."""
    config = bridge_config(tmp_path)
    await init_database(config)
    port = free_port()
    pending = [BotPending(DOCTOR, key(), key(), 1_760_000_000_000)]
    outcomes: dict[str, str] = {}

    async def outcome_of(user: str) -> str | None:
        return outcomes.get(user)

    reporter = ResetReporter(
        f"http://127.0.0.1:{port}",
        SERVICE_TOKEN,
        "@caducee:clinic.test",
        lambda: list(pending),
        outcome_of,
        first_retry=0.05,
    )
    reporter.start()
    try:
        for _ in range(3):
            reporter.changed()  # what the bot does at each change: no waiting

        async def failed_twice() -> bool | None:
            return True if reporter.failures >= 2 else None

        await eventually(failed_twice, timeout=10)
        assert reporter.reports == 0
        async with live_bridge(config, port) as app:

            async def kept() -> list[str] | None:
                async with app[DATABASE].sessions() as s:
                    found = await latest_reports(s)
                return [p.user_id for p in found[0].pending] if found else None

            assert await eventually(kept, timeout=10) == [DOCTOR]
            outcomes[DOCTOR] = "confirmed-by-session"
            pending.clear()
            reporter.changed()

            async def emptied() -> bool | None:
                return True if await kept() == [] else None

            await eventually(emptied, timeout=10)
            lines = await audit_lines(app)
        assert [a for a, _, _ in lines] == [PENDING_ACTION, ENDED_ACTION]
        assert "how=confirmed-by-session" in lines[1][2]
    finally:
        await reporter.aclose()


@asynccontextmanager
async def live_bridge(config: BridgeConfig, port: int) -> AsyncIterator[web.Application]:
    """The bridge application listening on a chosen loopback port."""
    runner = web.AppRunner(create_app(config, create_database=False))
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", port).start()
        yield runner.app
    finally:
        await runner.cleanup()


@pytest_asyncio.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    async with bridge_database(request.param, tmp_path) as opened:
        yield opened


async def test_each_bots_list_reads_back_whole_and_in_utc(db: Database) -> None:
    """Two bots (two service tokens) keep their own lists; times come back as written."""
    now = datetime(2026, 12, 5, 8, 0, tzinfo=UTC)
    late, early = entry(DOCTOR, key(), since_ms=1_760_000_500_000), entry(OTHER, key())
    async with db.sessions.begin() as s:
        await save_report(s, "bot", parse_report(report(late, early)), now=now)
        await save_report(s, "bot-b", parse_report(report()), now=now)
    async with db.sessions() as s:
        found = await latest_reports(s)
    assert [(r.reporter, r.reported_at) for r in found] == [("bot", now), ("bot-b", now)]
    assert [(p.user_id, p.since) for p in found[0].pending] == [
        (OTHER, datetime.fromtimestamp(1_760_000_000, UTC)),
        (DOCTOR, datetime.fromtimestamp(1_760_000_500, UTC)),
    ]
    assert found[1].pending == ()
