"""Benchmark: the bot at federation size, on the production topology (not part of `make test`).

Setup (tests/bench/scale_build.py, cached between runs): Synapse main + generic worker +
federation sender on PostgreSQL and Redis, production rate limits, a second homeserver;
N practitioners; the Caducée bot (its own process, `caducee bot run`, the rendered
production configuration) and a bare nio echo bot (the baseline) in R encrypted rooms.

Measured, each with its target, the machine's load, and the same-run baseline where one
exists:
1. the bot's RSS after its first sync, and after `--traffic` seconds of `--rate` messages/s
   (E2EE, from the burst doctors in their DMs: people's own limit allows each 0.2/s);
2. restart to first reply: with the stored sync token, and cold (token deleted);
3. `!find` p50/p95 against the echo bot, same rooms, same run (ratio <= 1.25);
4. `!case new` with 5 invitees on both homeservers, p50 <= 500 ms;
bursts (tests/bench/bench_burst.py runs them alone): `--burst-dms` practitioners open a DM
with the bot at the same moment (each joined within 60 s), then `--burst-finds` doctors send
`!find` in the same second (each answered within 5 s); the echo bot is the baseline of both.

    python -m tests.bench scale                  # --size quick: every step runs (minutes)
    python -m tests.bench scale --size issue     # 2 000 practitioners, 5 000 rooms
    python -m tests.bench scale --size issue --practitioners 500 --rooms 1250
    python -m tests.bench scale --size issue --build-for 3600  # measure what an hour built

Measures 5 (expiry on this topology) and 6 (guard cost) are not part of it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from nio import AsyncClient, AsyncClientConfig, InviteMemberEvent, RoomMessageText

from bot.commands.rooms import build_case_room_body
from bot.ids import UserId
from bot.matrix.homeserver import NioJson
from tests.bench.bench_bot import EchoBot, InviteWatcher, percentile, round_trip
from tests.bench.scale_build import (
    CACHE,
    Scale,
    api,
    bounded,
    build,
    joined_rooms,
    save,
    scale_setup,
)
from tests.deploy_stack import CADUCEE
from tests.matrix_helpers import ENCRYPTION, Doctor, unique

QUERY = "!find cardiologue lyon"
CREATE_ROOM = "/_matrix/client/v3/createRoom"


class BotProcess:
    """`caducee bot run` with the rendered production configuration, as a process."""

    def __init__(self, scale: Scale) -> None:
        rendered = scale.stack.rendered
        assert rendered is not None
        self.config = rendered.bot
        self.log = scale.base / "bot.log"
        self.process: asyncio.subprocess.Process | None = None

    async def start(self, timeout: float = 600) -> float:
        """Launch; returns the seconds until the bot logged that it is ready."""
        mark = self.log.stat().st_size if self.log.exists() else 0
        started = time.perf_counter()
        with self.log.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                *CADUCEE, "bot", "run", "--config", str(self.config), stdout=log, stderr=log
            )
        while True:
            with self.log.open("rb") as log:
                log.seek(mark)
                if b" ready (device " in log.read():
                    return time.perf_counter() - started
            if self.process.returncode is not None or time.perf_counter() - started > timeout:
                raise RuntimeError(self.log.read_text()[-3000:])
            await asyncio.sleep(0.2)

    def rss_mib(self) -> float:
        assert self.process is not None
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no RSS")

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            await self.process.wait()
        self.process = None

    def forget_sync_token(self, scale: Scale) -> int:
        """A cold start: the device and its keys stay, the sync token goes."""
        dropped = 0
        for db in scale.stack.topology.bot_data_dir.rglob("*.db"):
            with contextlib.closing(sqlite3.connect(db)) as conn:
                tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
                if "synctokens" in tables:
                    dropped += conn.execute("DELETE FROM synctokens").rowcount
                    conn.commit()
        return dropped


async def echo_bot(scale: Scale) -> EchoBot:
    """The baseline, logged in once (cached) and exempted like the bot: a bare nio client."""
    state = scale.state
    if "echo" not in state:
        user = await scale.prod.register_user("echo", secrets.token_urlsafe(12))
        state["echo"] = {
            "user_id": user.user_id,
            "token": user.access_token,
            "device_id": user.device_id,
            "pickle": secrets.token_hex(16),
        }
        async with aiohttp.ClientSession() as http:
            from bridge.synapse_admin import SynapseAdmin

            await SynapseAdmin(
                http, scale.stack.main_client_url, state["admin"]
            ).exempt_from_rate_limits(user.user_id)
        save(scale)
    e = state["echo"]
    store = scale.base / "echo-store"
    store.mkdir(mode=0o700, exist_ok=True)
    client = AsyncClient(
        scale.prod.client_url,
        e["user_id"],
        device_id=e["device_id"],
        store_path=str(store),
        config=AsyncClientConfig(encryption_enabled=True, pickle_key=e["pickle"]),
    )
    client.restore_login(e["user_id"], e["device_id"], e["token"])
    if client.should_upload_keys:
        await client.keys_upload()
    echo = EchoBot(client)
    client.add_event_callback(echo.on_message, RoomMessageText)
    client.add_event_callback(echo.on_invite, InviteMemberEvent)
    # Its first sync goes on from its saved position, lazy-loading members like any client
    # in thousands of rooms: a full-state sync of every room kept the homeserver's client
    # process busy for minutes at 2 518 rooms, and the benchmark's doctors' syncs timed out.
    await client.sync(timeout=0, sync_filter=ECHO_FILTER)
    echo.task = asyncio.create_task(client.sync_forever(timeout=30_000, sync_filter=ECHO_FILTER))
    return echo


ECHO_FILTER: dict[str, Any] = {
    "presence": {"not_types": ["*"]},
    "room": {
        "state": {"lazy_load_members": True},
        "timeline": {"limit": 10, "lazy_load_members": True},
        "ephemeral": {"not_types": ["*"]},
    },
}


async def wait_all_joined(
    scale: Scale, user_id: str, rooms: set[str] | int, timeout: float
) -> dict[str, float]:
    """Poll the admin API: when each of `rooms` (or each of `rooms` new rooms) was first seen
    joined by `user_id`, in seconds from the call."""
    started = time.perf_counter()
    before = set() if isinstance(rooms, set) else await joined_rooms(scale, user_id)
    count = len(rooms) if isinstance(rooms, set) else rooms
    seen: dict[str, float] = {}
    while len(seen) < count and time.perf_counter() - started < timeout:
        now = time.perf_counter() - started
        current = await joined_rooms(scale, user_id)
        for room in current & rooms if isinstance(rooms, set) else current - before:
            seen.setdefault(room, now)
        await asyncio.sleep(0.5)
    return seen


async def burst_dms(scale: Scale, count: int, echo_id: str) -> dict[str, Any]:
    """`count` practitioners open a DM with the bot in the same moment, each inviting the
    echo bot too (the same-run baseline: a bare client, exempted like the bot). Times run
    from the burst's start, so they include the homeserver's time to create the rooms."""
    accounts = [a for a in scale.state["accounts"] if a["where"] == "prod"][:count]
    async with aiohttp.ClientSession() as http:

        async def open_dm(account: dict[str, str]) -> str:
            body = {
                "is_direct": True,
                "invite": [scale.bot_id, echo_id],
                "initial_state": [ENCRYPTION],
                "preset": "private_chat",
            }
            path = "/_matrix/client/v3/createRoom"
            url = scale.hs(account["where"]).client_url
            room = str((await api(http, url, account["token"], "POST", path, body))["room_id"])
            created[room] = time.perf_counter() - started
            return room

        created: dict[str, float] = {}
        started = time.perf_counter()
        making = asyncio.gather(*(open_dm(a) for a in accounts))
        # Joins are watched while the rooms are still being created: the bot joins each as
        # soon as its invitation arrives.
        bot, echo = await asyncio.gather(
            wait_all_joined(scale, scale.bot_id, len(accounts), timeout=300),
            wait_all_joined(scale, echo_id, len(accounts), timeout=300),
        )
        rooms = await making
        opened = max(created.values(), default=0.0)
    bot = {room: t for room, t in bot.items() if room in created}
    echo = {room: t for room, t in echo.items() if room in created}
    return {
        "opened": len(rooms),
        "opened_s": opened,
        "joined": len(bot),
        "times": list(bot.values()),
        "lags": [bot[room] - created[room] for room in bot],
        "echo_joined": len(echo),
        "echo_times": list(echo.values()),
        "echo_lags": [echo[room] - created[room] for room in echo],
    }


async def burst_finds(doctors: list[Doctor], rooms: list[str], bot_id: str) -> list[float]:
    """Every doctor sends the same `!find` at once; seconds to each reply (inf: none in 30 s)."""

    async def one(doctor: Doctor, room: str) -> float:
        try:
            return await round_trip(doctor, room, bot_id, QUERY)
        except AssertionError:
            return float("inf")

    return list(await asyncio.gather(*(one(d, r) for d, r in zip(doctors, rooms, strict=True))))


async def first_reply_after_start(
    bot: BotProcess, doctor: Doctor, room: str, bot_id: str
) -> tuple[float, float]:
    started = time.perf_counter()
    ready = await bot.start()
    await round_trip(doctor, room, bot_id, "!help")
    return ready, time.perf_counter() - started


async def doctors_with_dms(
    scale: Scale, tmp: Path, count: int, echo_id: str
) -> tuple[list[Doctor], list[str], list[str]]:
    """`count` E2EE cross-signed doctors, each with a DM with the bot and one with the echo
    bot, keys exchanged both ways (one `!help` each)."""
    doctors: list[Doctor] = list(
        await bounded(4, [lambda: Doctor.create(scale.prod, tmp, name="burst")] * count)  # type: ignore[arg-type]
    )
    bot_rooms = list(
        await bounded(4, [lambda d=d: d.dm(scale.bot_id, timeout=120) for d in doctors])
    )
    echo_rooms = list(await bounded(4, [lambda d=d: d.dm(echo_id, timeout=120) for d in doctors]))
    for d, bot_room, echo_room in zip(doctors, bot_rooms, echo_rooms, strict=True):
        await round_trip(d, bot_room, scale.bot_id, "!help")
        await round_trip(d, echo_room, echo_id, "!help")
    return doctors, bot_rooms, echo_rooms


async def measure_bursts(
    args: argparse.Namespace, scale: Scale, echo_id: str, doctors: list[Doctor], rooms: list[str],
    echo_rooms: list[str], r: dict[str, Any],
) -> None:  # fmt: skip
    uptime = load()
    r["burst_dms"] = await burst_dms(scale, args.burst_dms, echo_id)
    r["burst_dms"]["load"] = uptime
    r["burst_finds_load"] = load()
    r["burst_finds"] = await burst_finds(doctors, rooms, scale.bot_id)
    r["burst_finds_echo"] = await burst_finds(doctors, echo_rooms, echo_id)


def load() -> str:
    """The machine's load averages (1, 5, 15 min), printed with each figure."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


async def measure(args: argparse.Namespace, scale: Scale, tmp: Path) -> dict[str, Any]:
    r: dict[str, Any] = {}
    bot = BotProcess(scale)
    echo = await echo_bot(scale)
    echo_id = str(echo.client.user_id)
    doctors: list[Doctor] = []
    watchers: list[InviteWatcher] = []
    try:
        r["first_ready_s"] = await bot.start()
        r["build_s"] = await build(
            scale, args.practitioners, args.rooms, echo_id, for_s=args.build_for
        )
        r["built"] = bool(scale.state.get("built"))
        r["joins_refused"] = scale.state.get("joins_refused", [])
        built = set(scale.state["dms"]) | set(scale.state["cases"])
        joined = await wait_all_joined(scale, scale.bot_id, built, timeout=3600)
        r["bot_rooms"] = len(joined)
        await bot.stop()
        r["ready_load"] = load()
        r["ready_s"] = await bot.start()
        r["rss_ready"] = bot.rss_mib()
        r["rooms_total"] = len(await joined_rooms(scale, scale.bot_id))

        doctors, dm_rooms, echo_rooms = await doctors_with_dms(
            scale, tmp, args.burst_finds, echo_id
        )
        if args.bursts:
            await measure_bursts(args, scale, echo_id, doctors, dm_rooms, echo_rooms, r)

        # Doctors take turns: one person sending every command would meet its own limit
        # (rc_message: 10, then one per 5 s) and time Synapse's 429s, not the bots.
        n = len(doctors)
        lead, lead_room = doctors[0], dm_rooms[0]
        r["find_load"] = load()
        bot_ms, echo_ms = [], []
        for i in range(args.finds):  # interleaved: both see the same load
            d = i % n
            bot_ms.append(1000 * await round_trip(doctors[d], dm_rooms[d], scale.bot_id, QUERY))
            echo_ms.append(1000 * await round_trip(doctors[d], echo_rooms[d], echo_id, QUERY))
        r["find_bot_ms"], r["find_echo_ms"] = bot_ms, echo_ms

        watchers = [
            await _watcher(h) for h in (scale.prod, scale.prod, scale.prod, scale.peer, scale.peer)
        ]  # type: ignore[arg-type]
        who = " ".join(str(w.client.user_id) for w in watchers)
        r["case_load"] = load()
        r["case_ms"], r["case_bare_ms"] = [], []
        for i in range(args.cases):  # interleaved: both see the same load
            r["case_ms"].append(
                await _case(doctors[i % n], dm_rooms[i % n], scale.bot_id, who, i, watchers)
            )
            r["case_bare_ms"].append(await _bare_case(echo.client, i, watchers))

        started = time.perf_counter()
        sent = 0
        r["traffic_load"] = load()
        while time.perf_counter() - started < args.traffic:
            d = doctors[sent % len(doctors)]
            await d.send(dm_rooms[sent % len(doctors)], f"note {sent}")
            sent += 1
            await asyncio.sleep(max(0.0, sent / args.rate - (time.perf_counter() - started)))
        r["traffic_messages"] = sent
        r["traffic_s"] = time.perf_counter() - started
        r["rss_traffic"] = bot.rss_mib()

        await bot.stop()
        r["restart_load"] = load()
        r["restart_warm"] = await first_reply_after_start(bot, lead, lead_room, scale.bot_id)
        await bot.stop()
        r["tokens_dropped"] = bot.forget_sync_token(scale)
        r["restart_cold"] = await first_reply_after_start(bot, lead, lead_room, scale.bot_id)
        r["rss_cold"] = bot.rss_mib()
    finally:
        for w in watchers:
            if w.task is not None:
                w.task.cancel()
            await w.client.close()
        for d in doctors:
            await d.close()
        await echo.stop()
        await bot.stop()
    return r


async def _watcher(hs: Any) -> InviteWatcher:
    user = await hs.register_user(unique("invitee"), secrets.token_urlsafe(12))
    client = AsyncClient(hs.client_url, user.user_id, device_id=user.device_id)
    client.restore_login(user.user_id, user.device_id, user.access_token)
    watcher = InviteWatcher(client)
    client.add_event_callback(watcher.on_invite, InviteMemberEvent)
    await client.sync(timeout=0)
    watcher.task = asyncio.create_task(client.sync_forever(timeout=30_000))
    return watcher


async def _invited_ms(room_id: str, watchers: list[InviteWatcher], started: float) -> float:
    """Milliseconds from `started` until every watcher has seen its invitation to `room_id`."""
    deadline = time.perf_counter() + 60
    while not all(room_id in w.seen for w in watchers):
        if time.perf_counter() > deadline:
            raise AssertionError(f"not every invitee saw {room_id}")
        await asyncio.sleep(0.005)
    return 1000 * (max(w.seen[room_id] for w in watchers) - started)


async def _case(
    doctor: Doctor, room: str, bot_id: str, who: str, i: int, watchers: list[InviteWatcher]
) -> float:
    mark = len(doctor.seen)
    started = time.perf_counter()
    await doctor.send(room, f"!case new Scale-{i} {who}")
    reply = await doctor.wait_for_text(bot_id, after=mark, timeout=60)
    room_id = "!" + reply.body.split("/#/!", 1)[1].split("?", 1)[0].split()[0]
    room_id = room_id.replace("%3A", ":")
    return await _invited_ms(room_id, watchers, started)


async def _bare_case(client: AsyncClient, i: int, watchers: list[InviteWatcher]) -> float:
    """The baseline of measure 4: a bare client (the echo bot) creates the same case room in
    one /createRoom, same invitees: the homeserver's own time for what `!case new` asks."""
    body = build_case_room_body(  # the bare client in the bot's place (the room's creator)
        label=f"Bare-{i}",
        requester=UserId(str(watchers[0].client.user_id)),
        bot=UserId(str(client.user_id)),
        ttl_seconds=86_400,
        invite=[UserId(str(w.client.user_id)) for w in watchers],
    )
    started = time.perf_counter()
    status, answer = await NioJson(client).request_json("POST", CREATE_ROOM, body)
    if status != 200:
        raise AssertionError(f"createRoom: {status} {answer}")
    room_id = str(answer["room_id"])
    return await _invited_ms(room_id, watchers, started)


def _p(values: list[float], q: float) -> float:
    return percentile(values, q) if values else float("nan")


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b and b == b and a == a else "n/a"


def report_bursts(args: argparse.Namespace, r: dict[str, Any]) -> None:
    if "burst_dms" in r:
        d = r["burst_dms"]
        last, echo_last = max(d["times"], default=float("nan")), max(d["echo_times"], default=0.0)
        lag, echo_lag = max(d["lags"], default=float("nan")), max(d["echo_lags"], default=0.0)
        print(
            f"burst: {d['opened']} DMs opened at once (the homeserver created the last one "
            f"after {d['opened_s']:.1f} s): {d['joined']} joined by the bot, last {last:.1f} s "
            f"after the burst (p50 {_p(d['times'], 0.5):.1f} s), at most {lag:.1f} s after its "
            f"room existed (p50 {_p(d['lags'], 0.5):.1f} s); echo bot {d['echo_joined']} "
            f"joined, last {echo_last:.1f} s, at most {echo_lag:.1f} s after its room; ratio "
            f"last {_ratio(last, echo_last)}, lag {_ratio(lag, echo_lag)} "
            f"(target: all within 60 s) [load {d['load']}]"
        )
    if "burst_finds" in r:
        f, e = r["burst_finds"], r["burst_finds_echo"]
        print(
            f"burst: {len(f)} !find in the same second: answered p50 {_p(f, 0.5):.2f} s max "
            f"{max(f):.2f} s, {sum(1 for x in f if x <= 5)} within 5 s (target: all); echo "
            f"p50 {_p(e, 0.5):.2f} s max {max(e):.2f} s; ratio max {_ratio(max(f), max(e))} "
            f"[load {r['burst_finds_load']}]"
        )


def report(args: argparse.Namespace, r: dict[str, Any]) -> None:
    print(
        f"setup: {args.practitioners} practitioners, bot in {r['rooms_total']} rooms "
        f"({r['bot_rooms']} built, build {r['build_s']:.0f} s, cached in {CACHE})"
        + ("" if r["built"] else f"; PARTIAL build: {r['bot_rooms']} of {args.rooms} rooms")
    )
    print(
        f"1. bot RSS after first sync {r['rss_ready']:.0f} MiB; after {r['traffic_messages']} "
        f"messages in {r['traffic_s']:.0f} s {r['rss_traffic']:.0f} MiB; after a cold start "
        f"{r['rss_cold']:.0f} MiB (target <= 250 MB) [load {r['ready_load']}]"
    )
    print(f"   start to ready: {r['ready_s']:.1f} s")
    w, c = r["restart_warm"], r["restart_cold"]
    print(
        f"2. restart to first reply: with token {w[1]:.1f} s (ready {w[0]:.1f} s, target <= 30); "
        f"cold {c[1]:.1f} s (ready {c[0]:.1f} s, target <= 120) [load {r['restart_load']}]"
    )
    b, e = r["find_bot_ms"], r["find_echo_ms"]
    print(
        f"3. !find x{len(b)}: bot p50 {_p(b, 0.5):.0f} ms p95 {_p(b, 0.95):.0f} ms; echo p50 "
        f"{_p(e, 0.5):.0f} ms p95 {_p(e, 0.95):.0f} ms; ratio p50 "
        f"{_ratio(_p(b, 0.5), _p(e, 0.5))} p95 {_ratio(_p(b, 0.95), _p(e, 0.95))} "
        f"(target <= 1.25x) [load {r['find_load']}]"
    )
    cs, bare = r["case_ms"], r["case_bare_ms"]
    print(
        f"4. !case new, 5 invitees on 2 homeservers x{len(cs)}: p50 {_p(cs, 0.5):.0f} ms "
        f"max {max(cs, default=float('nan')):.0f} ms (target p50 <= 500); the same room by a "
        f"bare /createRoom p50 {_p(bare, 0.5):.0f} ms, ratio {_ratio(_p(cs, 0.5), _p(bare, 0.5))} "
        f"[load {r['case_load']}]"
    )
    report_bursts(args, r)
    refused = list(r.get("joins_refused", []))
    if refused:
        print(f"build: {len(refused)} joins refused, first: {refused[0]}")
    print("5. expiry on this topology and 6. guard cost: not measured by this benchmark")


SIZES = {
    # a check that every step runs (minutes)
    "quick": {"practitioners": 20, "rooms": 40, "burst_dms": 20, "burst_finds": 5,
              "finds": 10, "cases": 3, "traffic": 30.0, "rate": 1.0},
    # the size
    "issue": {"practitioners": 2000, "rooms": 5000, "burst_dms": 300, "burst_finds": 20,
              "finds": 50, "cases": 5, "traffic": 900.0, "rate": 4.0},
}  # fmt: skip


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tests.bench scale")
    parser.add_argument("--size", choices=sorted(SIZES), default="quick")
    for name in SIZES["quick"]:
        kind = float if name in ("traffic", "rate") else int
        parser.add_argument(f"--{name.replace('_', '-')}", type=kind, default=None)
    parser.add_argument("--no-bursts", dest="bursts", action="store_false")
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument(
        "--build-for",
        type=float,
        default=None,
        metavar="SECONDS",
        help="stop building new rooms after this long and measure what is built (the next "
        "run goes on building)",
    )
    return parser


def parse(argv: list[str] | None) -> argparse.Namespace:
    args = parser().parse_args(argv)
    for name, value in SIZES[args.size].items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)

    async def run() -> dict[str, Any]:
        key = f"scale-n{args.practitioners}-r{args.rooms}"
        async with scale_setup(key, rebuild=args.rebuild) as scale:
            with tempfile.TemporaryDirectory(prefix="caducee-bench-scale-") as tmp:
                return await measure(args, scale, Path(tmp))

    print(f"load at start: {load()}", flush=True)
    results = asyncio.run(run())
    report(args, results)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
