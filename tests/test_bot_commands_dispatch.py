"""The dispatcher end to end over an in-memory Matrix, a real store and the real bridge
(its app, importer and search on a small register): what a doctor types, what the bot does
and answers, exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import pytest_asyncio

from bot.bridge_client import DirectoryClient, SearchPage
from bot.commands.context import CommandSettings, IncomingMessage
from bot.commands.dispatcher import CommandDispatcher
from bot.commands.registry import CaseLifecycle
from bot.expiry.policy import PURGE_MARGIN_MS
from bot.ids import EventId, RoomId, UserId
from bot.store import BotDatabase, BotStore, CaseRoom, Claim
from bridge.directory.search import COUNT_CAP
from tests.bot_commands_support import (
    DIRECTORY_TOKEN,
    Entry,
    FakeMatrix,
    running_bridge,
    sqlite_url,
)

ALICE = UserId("@alice:hs-a.test")
BOB = UserId("@bob:hs-b.test")
CAROL = UserId("@carol:hs-a.test")
EVE = UserId("@eve:outside.test")
SETTINGS = CommandSettings(
    default_ttl_seconds=7 * 86400,
    min_ttl_seconds=60,
    max_ttl_seconds=28 * 86400,
    member_servers=frozenset({"hs-a.test", "hs-b.test"}),
)


def rpps(base: str) -> str:
    """An RPPS number: 10 digits and their Luhn check digit, as the register publishes."""
    total = 0
    for i, ch in enumerate(reversed(base)):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return base + str((10 - total % 10) % 10)


MARTIN, LEGER, OUTSIDER = rpps("1000000001"), rpps("1000000002"), rpps("1000000003")
HIDDEN = rpps("1000000004")
CARDIO = "Cardiologie et maladies vasculaires"
ENTRIES = [
    Entry(MARTIN, "MARTIN", "MARIE", CARDIO, matrix_id=str(BOB)),
    Entry(LEGER, "LÉGER", "PAUL", CARDIO, "Villeurbanne", "69100"),
    Entry(OUTSIDER, "OUTSIDER", "ÈVE", "Pédiatrie", matrix_id=str(EVE)),
    # Onboarded, but hides their Matrix ID from searches.
    Entry(HIDDEN, "DISCRET", "LOU", "Pédiatrie", matrix_id="@lou:hs-a.test", visible=False),
    *(
        Entry(
            rpps(f"20000000{i:02d}"),
            "GEN",
            f"G{i}",
            city="Brest",
            postcode="29200",
            department=("29", "Finistère"),
        )
        for i in range(12)
    ),
]
_ids = itertools.count()


class CountingDirectory(DirectoryClient):
    """The real client, counting its searches (to prove a duplicate did not run)."""

    searches = 0

    async def search(self, query: str, *, limit: int = 10, offset: int = 0) -> SearchPage:
        self.searches += 1
        return await super().search(query, limit=limit, offset=offset)


@dataclass
class RecordingLifecycle(CaseLifecycle):
    calls: list[tuple[str, RoomId]] = field(default_factory=list)
    matrix: FakeMatrix | None = None

    async def before_members_removed(self, case: CaseRoom) -> None:
        assert self.matrix is not None
        members = await self.matrix.joined_members(case.room_id)
        self.calls.append(("before_members_removed", case.room_id))
        assert len(members) > 1, "redaction must happen while members are still there"

    async def after_bot_left(self, case: CaseRoom) -> None:
        self.calls.append(("after_bot_left", case.room_id))

    async def close_aborted(self, case: CaseRoom) -> None:
        self.calls.append(("close_aborted", case.room_id))


@dataclass
class Bot:
    matrix: FakeMatrix
    store: BotStore
    bridge_url: str
    dispatcher: CommandDispatcher
    lifecycle: RecordingLifecycle
    client: CountingDirectory
    dm: RoomId

    def message(
        self, body: str, sender: UserId = ALICE, room: RoomId | None = None
    ) -> IncomingMessage:
        return IncomingMessage(
            room_id=room or self.dm,
            event_id=EventId(f"$ev{next(_ids)}"),
            sender=sender,
            body=body,
            origin_server_ts=0,
            is_direct=room is None,
        )

    async def say(self, body: str, sender: UserId = ALICE, room: RoomId | None = None) -> list[str]:
        """Send ``body``; return the notices the bot posted because of it."""
        before = len(self.matrix.notices)
        await self.dispatcher.handle(self.message(body, sender, room))
        return [n.body for n in self.matrix.notices[before:]]


@pytest_asyncio.fixture
async def bot(tmp_path: Path) -> AsyncIterator[Bot]:
    async with running_bot(tmp_path, ENTRIES) as found:
        yield found


@contextlib.asynccontextmanager
async def running_bot(tmp_path: Path, entries: list[Entry]) -> AsyncIterator[Bot]:
    """The bot's dispatcher against the real bridge holding `entries`."""
    async with running_bridge(tmp_path, entries) as bridge_url:
        store = BotStore(await BotDatabase.open(sqlite_url(tmp_path), create=True))
        matrix = FakeMatrix()
        lifecycle = RecordingLifecycle(matrix=matrix)
        client = CountingDirectory(bridge_url, DIRECTORY_TOKEN)
        dispatcher = CommandDispatcher(
            actions=matrix, store=store, directory=client, settings=SETTINGS, lifecycle=lifecycle
        )
        dm = matrix.add_room([ALICE])
        try:
            yield Bot(matrix, store, bridge_url, dispatcher, lifecycle, client, dm)
        finally:
            await client.close()
            await store.database.close()


async def _open_case(bot: Bot, body: str = "!case new genou-72 @bob:hs-b.test") -> RoomId:
    await bot.say(body)
    (room_id,) = [r for r in bot.matrix.rooms if r != bot.dm]
    bot.matrix.join(room_id, ALICE)
    for invited in list(bot.matrix.rooms[room_id].invited):
        bot.matrix.join(room_id, invited)
    return room_id


# -- ignoring, help, usage ---------------------------------------------------------------


async def test_messages_not_starting_with_the_prefix_are_ignored(bot: Bot) -> None:
    msg = bot.message("bonjour, help please")
    await bot.dispatcher.handle(msg)
    assert bot.matrix.notices == []
    assert await bot.store.claim_command(msg.event_id, msg.room_id, "x") is Claim.NEW


async def test_help_lists_every_command_with_examples_in_french_and_english(bot: Bot) -> None:
    (reply,) = await bot.say("!help")
    for text in ("!find <query>", "!case new", "!case invite", "!case close", "ex. !find"):
        assert text in reply
    assert "Cherche un praticien" in reply and "Searches the practitioner directory" in reply
    assert bot.matrix.notices[-1].html is not None and "<code>" in bot.matrix.notices[-1].html


async def test_unknown_commands_point_to_help_and_bad_syntax_shows_usage(bot: Bot) -> None:
    (unknown,) = await bot.say("!frobnicate now")
    assert "Type !help" in unknown and "!frobnicate" in unknown
    (bare,) = await bot.say("!")
    assert "Type !help" in bare
    (usage,) = await bot.say("!case new")
    assert "The case label is missing" in usage
    assert "Usage : !case new <label> [who ...] [ttl=<duration>]" in usage
    (group,) = await bot.say("!case reopen")
    assert "!case new" in group and "!case invite" in group and "!case close" in group
    (no_args,) = await bot.say("!help me")
    assert "takes no arguments" in no_args and "Usage : !help" in no_args


async def test_non_member_servers_get_no_answer(bot: Bot) -> None:
    assert await bot.say("!help", sender=EVE) == []


# -- !find --------------------------------------------------------------------------------


async def test_find_shows_name_specialty_city_rpps_and_matrix_id(bot: Bot) -> None:
    (reply,) = await bot.say("!find cardiologie")
    lines = reply.splitlines()
    assert lines[0] == "2 résultat(s) / 2 result(s)"
    by_rpps = {line.split(" — ")[3]: line for line in lines[1:]}
    assert by_rpps[f"RPPS {MARTIN}"].endswith(
        f"Dr Marie MARTIN — {CARDIO} — Lyon (69003) — RPPS {MARTIN} — @bob:hs-b.test"
    )
    assert f"Dr Paul LÉGER — {CARDIO} — Villeurbanne (69100)" in by_rpps[f"RPPS {LEGER}"]
    assert by_rpps[f"RPPS {LEGER}"].endswith("not on the network yet")
    html = bot.matrix.notices[-1].html
    assert html is not None and 'href="https://matrix.to/#/@bob:hs-b.test"' in html


async def test_find_shows_at_most_ten_and_says_how_many_matched(bot: Bot) -> None:
    (reply,) = await bot.say('!find "brest"')
    lines = reply.splitlines()
    assert lines[0] == "10 résultat(s) sur 12 / 10 result(s) of 12"
    assert len(lines) == 11


async def test_find_past_the_directory_count_cap_says_500_plus(tmp_path: Path) -> None:
    # More practitioners match than the directory counts: it answers `more`, and the bot
    # must not present its capped count as the exact number.
    many = [
        Entry(rpps(f"3000000{i:03d}"), "NOMBREUX", f"N{i}", city="Quimper", postcode="29000")
        for i in range(COUNT_CAP + 5)
    ]
    async with running_bot(tmp_path, many) as crowded:
        (reply,) = await crowded.say("!find nombreux")
        (exact,) = await crowded.say(f"!find nombreux n{COUNT_CAP // 10}")
    assert reply.splitlines()[0] == (
        f"10 résultat(s) sur {COUNT_CAP}+ / 10 result(s) of {COUNT_CAP}+"
    )
    assert len(reply.splitlines()) == 11
    # N50, N500..N504: a count under the cap is shown as it is.
    assert exact.splitlines()[0] == "6 résultat(s) / 6 result(s)"


async def test_find_without_result_says_so_plainly(bot: Bot) -> None:
    assert await bot.say("!find oncologue ajaccio") == ["Aucun résultat. / No result."]


async def test_find_when_the_directory_is_down_or_refuses_says_unavailable(
    bot: Bot, unused_tcp_port: int
) -> None:
    down = DirectoryClient(f"http://127.0.0.1:{unused_tcp_port}", DIRECTORY_TOKEN)
    bad_token = DirectoryClient(bot.bridge_url, "wrong-" + "x" * 40)
    for client in (down, bad_token):
        dispatcher = CommandDispatcher(
            actions=bot.matrix, store=bot.store, directory=client, settings=SETTINGS
        )
        before = len(bot.matrix.notices)
        await dispatcher.handle(bot.message("!find martin"))
        (reply,) = [n.body for n in bot.matrix.notices[before:]]
        assert "directory is unavailable" in reply
        assert "Traceback" not in reply and "Error" not in reply
        await client.close()
    audit = await bot.store.audit_entries(limit=2)
    assert [e.outcome for e in audit] == ["directory_unavailable"] * 2


# -- !case new ------------------------------------------------------------------------------


async def test_case_new_creates_a_protected_room_invites_and_links(bot: Bot) -> None:
    (reply,) = await bot.say(
        f"!case new suivi genou @carol:hs-a.test {MARTIN} {LEGER} {OUTSIDER} {HIDDEN} "
        "@dan:outside.test 10999999999 ttl=2d"
    )
    (room_id,) = [r for r in bot.matrix.rooms if r != bot.dm]
    room = bot.matrix.rooms[room_id]
    assert room.body["name"] == "Cas · suivi genou"
    # Invited by the creation itself, in the order asked, the requester (who gets the link
    # in the reply anyway) last.
    assert room.body["invite"] == [CAROL, BOB, ALICE]
    assert room.state[("m.room.encryption", "")] == {"algorithm": "m.megolm.v1.aes-sha2"}
    assert room.state[("m.room.retention", "")] == {
        "max_lifetime": 2 * 86400 * 1000 + PURGE_MARGIN_MS
    }
    assert room.power == {ALICE: 100}
    # The requester, a Matrix ID and an RPPS number resolved to a Matrix ID are invited.
    assert room.invited == {ALICE, CAROL, BOB}
    assert f"https://matrix.to/#/{room_id}?via=hs-a.test&via=hs-b.test" in reply
    assert "messages erased after 2d" in reply
    assert f"Invited: @carol:hs-a.test, Dr Marie MARTIN (RPPS {MARTIN})" in reply
    assert f"Dr Paul LÉGER (RPPS {LEGER}) — pas encore sur le réseau" in reply
    assert f"Dr Ève OUTSIDER (RPPS {OUTSIDER}) — son serveur n'est pas membre" in reply
    assert f"Dr Lou DISCRET (RPPS {HIDDEN}) — pas encore sur le réseau" in reply
    assert "@dan:outside.test — son serveur n'est pas membre" in reply
    assert "10999999999 — numéro inconnu" in reply
    case = await bot.store.get_case(room_id)
    assert case is not None and case.label == "suivi genou" and case.creator == ALICE
    assert case.ttl_seconds == 2 * 86400 and case.is_open


async def test_case_new_uses_the_default_lifetime(bot: Bot) -> None:
    room_id = await _open_case(bot, "!case new x")
    case = await bot.store.get_case(room_id)
    assert case is not None and case.ttl_seconds == SETTINGS.default_ttl_seconds
    state = bot.matrix.rooms[room_id].state[("m.room.retention", "")]
    assert state == {"max_lifetime": SETTINGS.default_ttl_seconds * 1000 + PURGE_MARGIN_MS}


async def test_case_new_refuses_patient_identifiers_and_creates_nothing(bot: Bot) -> None:
    nir13 = "2690299341732"
    nir = nir13 + f"{97 - int(nir13) % 97:02d}"
    (reply,) = await bot.say(f"!case new patient {nir} @bob:hs-b.test")
    assert "patient identifier" in reply and nir not in reply
    assert list(bot.matrix.rooms) == [bot.dm]


async def test_case_new_lifetime_out_of_bounds_names_the_bounds(bot: Bot) -> None:
    (reply,) = await bot.say("!case new x ttl=10w")
    assert "outside the federation's bounds (1m to 4w)" in reply
    assert list(bot.matrix.rooms) == [bot.dm]


async def test_case_new_with_the_directory_down_creates_nothing(
    bot: Bot, unused_tcp_port: int
) -> None:
    client = DirectoryClient(f"http://127.0.0.1:{unused_tcp_port}", DIRECTORY_TOKEN)
    dispatcher = CommandDispatcher(
        actions=bot.matrix, store=bot.store, directory=client, settings=SETTINGS
    )
    await dispatcher.handle(bot.message(f"!case new x {MARTIN}"))
    await client.close()
    assert "directory is unavailable" in bot.matrix.notices[-1].body
    assert list(bot.matrix.rooms) == [bot.dm]


async def test_case_new_reports_matrix_refusals(bot: Bot) -> None:
    bot.matrix.refuse_invites[str(CAROL)] = "user not found"
    (reply,) = await bot.say("!case new x @carol:hs-a.test @bob:hs-b.test")
    assert "Invited: @bob:hs-b.test" in reply
    assert "Not invited: @carol:hs-a.test — user not found" in reply
    bot.matrix.refuse_invites[str(ALICE)] = "server unreachable"
    (reply,) = await bot.say("!case new z")
    assert "I could not invite you (server unreachable): use the link" in reply
    assert len(bot.matrix.rooms) == 3  # the room exists and is recorded all the same
    bot.matrix.fail_create = "room creation refused"
    (reply,) = await bot.say("!case new y")
    assert "The Matrix server refused the operation: room creation refused" in reply
    assert (await bot.store.audit_entries(limit=1))[0].outcome == "matrix_error"


# -- !case invite / close -------------------------------------------------------------------


async def test_case_room_commands_outside_a_case_room_are_explained(bot: Bot) -> None:
    for body in ("!case invite @bob:hs-b.test", "!case close"):
        (reply,) = await bot.say(body)
        assert "works inside a case room" in reply


async def test_case_invite_is_for_the_requester_or_room_admins(bot: Bot) -> None:
    room_id = await _open_case(bot)
    (refused,) = await bot.say("!case invite @carol:hs-a.test", sender=BOB, room=room_id)
    assert "Only the practitioner who opened this case or a room admin" in refused
    assert CAROL not in bot.matrix.rooms[room_id].invited

    (ok,) = await bot.say(f"!case invite @carol:hs-a.test {LEGER}", room=room_id)
    assert "Invited: @carol:hs-a.test" in ok and "not on the network yet" in ok
    assert CAROL in bot.matrix.rooms[room_id].invited

    bot.matrix.rooms[room_id].power[BOB] = 100  # promoted to admin by the requester
    dave = UserId("@dave:hs-b.test")
    (ok,) = await bot.say(f"!case invite {dave}", sender=BOB, room=room_id)
    assert f"Invited: {dave}" in ok
    (already,) = await bot.say("!case invite @bob:hs-b.test", room=room_id)
    assert "already in the room" in already


async def test_case_close_removes_everyone_forgets_the_case_and_leaves(bot: Bot) -> None:
    room_id = await _open_case(bot)
    await bot.say(f"!case invite {CAROL}", room=room_id)  # invited, never joined
    (refused,) = await bot.say("!case close", sender=BOB, room=room_id)
    assert "Only the practitioner who opened this case" in refused

    assert await bot.say("!case close confirm", room=room_id) != []
    room = bot.matrix.rooms[room_id]
    assert room.joined == set() and room.invited == set()
    kicked = {c[2] for c in bot.matrix.calls if c[0] == "kick"}
    assert kicked == {ALICE, BOB, CAROL}  # the pending invitation is revoked too
    case = await bot.store.get_case(room_id)
    assert case is not None and not case.is_open
    assert bot.lifecycle.calls == [
        ("before_members_removed", room_id),
        ("after_bot_left", room_id),
    ]
    assert "Case closed by @alice:hs-a.test" in bot.matrix.notices_in(room_id)[-1]


async def test_a_close_that_cannot_remove_the_members_leaves_the_case_open(bot: Bot) -> None:
    room_id = await _open_case(bot)
    bot.matrix.fail_kick = "the homeserver is restarting"
    replies = await bot.say("!case close confirm", room=room_id)
    assert any("restarting" in r for r in replies), replies  # the requester is told why
    case = await bot.store.get_case(room_id)
    assert case is not None and case.is_open
    assert bot.lifecycle.calls == [
        ("before_members_removed", room_id),
        ("close_aborted", room_id),
    ]
    bot.matrix.fail_kick = None
    await bot.say("!case close confirm", room=room_id)  # running it again finishes the job
    case = await bot.store.get_case(room_id)
    assert case is not None and not case.is_open


# -- exactly once ---------------------------------------------------------------------------


async def test_a_redelivered_command_runs_once_even_after_a_restart(
    bot: Bot, tmp_path: Path
) -> None:
    msg = bot.message("!case new x @bob:hs-b.test")
    await bot.dispatcher.handle(msg)
    await bot.dispatcher.handle(msg)
    await asyncio.gather(bot.dispatcher.handle(msg), bot.dispatcher.handle(msg))
    restarted_store = BotStore(await BotDatabase.open(sqlite_url(tmp_path), create=True))
    restarted = CommandDispatcher(
        actions=bot.matrix, store=restarted_store, directory=bot.client, settings=SETTINGS
    )
    await restarted.handle(msg)
    await restarted_store.database.close()
    assert len(bot.matrix.rooms) == 2  # the DM and one case room
    assert len(bot.matrix.notices_in(bot.dm)) == 1


async def test_concurrent_duplicates_in_one_process_run_once(bot: Bot) -> None:
    msg = bot.message("!find cardiologie")
    await asyncio.gather(*(bot.dispatcher.handle(msg) for _ in range(5)))
    assert len(bot.matrix.notices) == 1
    assert bot.client.searches == 1


async def test_an_interrupted_case_new_is_resumed_and_opens_one_room(bot: Bot) -> None:
    msg = bot.message("!case new x")
    # The bot claimed it, then died before doing anything.
    assert await bot.store.claim_command(msg.event_id, msg.room_id, "case new") is Claim.NEW
    await bot.dispatcher.handle(msg)
    assert len(bot.matrix.rooms) == 2  # the DM and one case room
    (reply,) = bot.matrix.notices_in(bot.dm)
    assert "opened" in reply
    await bot.dispatcher.handle(msg)
    assert len(bot.matrix.notices_in(bot.dm)) == 1


async def test_an_interrupted_search_or_usage_reply_is_simply_run_again(bot: Bot) -> None:
    for body, expected in (("!find cardiologie", "2 résultat(s)"), ("!nope", "Unknown command")):
        msg = bot.message(body)
        await bot.store.claim_command(msg.event_id, msg.room_id, "find")
        await bot.dispatcher.handle(msg)
        assert expected in bot.matrix.notices_in(bot.dm)[-1]


# -- privacy --------------------------------------------------------------------------------


async def test_no_argument_reaches_the_logs_or_the_audit(
    bot: Bot, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret_label = "genou-secret-label"
    await bot.say(f"!case new {secret_label} {MARTIN}")
    await bot.say("!find cardiologie villeurbanne")
    await bot.say("!case new x ttl=9999w")
    # The bot's own loggers (drivers' DEBUG output echoes SQL parameters: keep it off).
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("bot."))
    assert "case new" in logged and "find" in logged
    for secret in (secret_label, "villeurbanne", MARTIN, "9999w", DIRECTORY_TOKEN):
        assert secret not in logged
    audit = await bot.store.audit_entries()
    assert {e.command for e in audit} == {"case new", "find"}
