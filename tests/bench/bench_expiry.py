"""Benchmark: message expiry at scale, with the bot killed (SIGKILL) once mid-run.

10 000 events spread over 200 case rooms (lifetimes 20-60 s), sent at a steady rate by a
practitioner on the bot's homeserver and one on a remote homeserver. The expiry bot (the
engine and a syncing nio client that saves its sync token only after the schedule is
committed, as the shell must) runs as a separate process on a SQLite database; it is killed
with SIGKILL halfway through the sending and restarted after a pause, while sending goes on.

Figures, from the homeservers themselves (each message's and its redaction's timestamps,
read back through /messages as a member on each server):
- lateness past the lifetime: p50 / p99 / max, for events that fell due while the bot was
  up, and counted from the bot's return for the rest;
- redactions per second during the catch-up, against the same-run baseline: a bare client
  redacting 1 000 fresh events as fast as it can with the same concurrency (measured after
  the run, on an otherwise idle federation);
- events missed, on the bot's server and on the remote one (target 0).

Topologies (``--topology``):
- ``local`` (default): the local launcher's two SQLite homeservers; the bot is the engine with
  a minimal syncing client (tests.expiry_support) in its own process, on SQLite.
- ``production``: the bot's homeserver as production runs it (tests/bench/scale_build.py:
  Synapse main + generic worker + federation sender on PostgreSQL with Redis, behind the
  routing proxy, production rate limits with the bot's account exempted by the deployment's
  `caducee deploy bot-account`), and a second homeserver federating. The bot is the shipped
  one, `caducee bot run` with the rendered production configuration (its database on
  PostgreSQL), killed with SIGKILL and started again. The two senders are exempted from
  rate limits by the benchmark's admin (people's own limit, 0.2 message/s, would otherwise
  be what is measured). Built fresh for each run, its databases dropped afterwards.

Run: ``python -m tests.bench expiry`` (``--events``, ``--rooms``, ``--rate``,
``--downtime`` to change the load, ``--topology production``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

import aiohttp
from sqlalchemy import text

from bot.expiry.engine import ExpirySettings
from bot.expiry.policy import PURGE_MARGIN_MS, percentile
from bot.store import BotDatabase, BotStore
from deploy.local.federation import HomeserverSpec, LocalFederation, RegisteredUser
from tests.expiry_support import ExpiryBot, Raw, Witness, create_case_room

LIFETIMES_S = (20, 30, 40, 60)
CONCURRENCY = 16


def free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ms() -> int:
    return int(time.time() * 1000)


# -- the bot process ---------------------------------------------------------------------


async def worker(config: dict[str, Any]) -> None:
    """Run the expiry bot until killed. The sync token lives in a file, written after the
    schedule is committed (as the shell must)."""

    class _Hs:  # what ExpiryBot needs of a Homeserver
        client_url = config["client_url"]
        server_name = config["server_name"]
        admin_token = config["admin_token"]

    account = RegisteredUser(**config["account"])
    token_file = Path(config["token_file"])
    bot = ExpiryBot(
        _Hs(),  # type: ignore[arg-type]  # duck-typed Homeserver
        account,
        config["db_url"],
        settings=ExpirySettings(concurrency=CONCURRENCY),
    )
    since = _load_token(token_file)
    await bot.start(since=since)
    print("ready", flush=True)
    while True:
        await asyncio.sleep(0.2)
        bot.check_alive()
        if bot.token and bot.token != since:
            since = bot.token
            _save_token(token_file, since)


def _load_token(path: Path) -> str | None:
    return path.read_text() if path.exists() else None


def _save_token(path: Path, token: str) -> None:
    """Atomically, so a SIGKILL leaves the previous token or the new one, never half."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(token)
    os.replace(tmp, path)


def spawn_worker(config_path: Path, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.bench.bench_expiry", "--worker", str(config_path)],
        stdout=subprocess.PIPE,
        stderr=open(log, "ab"),
    )


async def wait_ready(process: subprocess.Popen[bytes]) -> None:
    assert process.stdout is not None
    line = await asyncio.to_thread(process.stdout.readline)
    if line.strip() != b"ready":
        raise RuntimeError(f"expiry worker did not start (exit {process.poll()})")


# -- measuring -----------------------------------------------------------------------------


async def history(member: Raw, room: str) -> dict[str, tuple[int, int | None]]:
    """Every message of a room as the member's homeserver serves it:
    event id → (origin_server_ts, redaction's origin_server_ts or None)."""
    found: dict[str, tuple[int, int | None]] = {}
    token: str | None = None
    while True:
        params = {"dir": "b", "limit": "500"}
        if token:
            params["from"] = token
        for attempt in range(5):  # a loaded Synapse answers 500 now and then
            try:
                page = await member.call(
                    "GET", f"/_matrix/client/v3/rooms/{quote(room)}/messages", **params
                )
                break
            except AssertionError:
                if attempt == 4:
                    raise
                await asyncio.sleep(2)
        for event in page.get("chunk", []):
            if event.get("type") != "m.room.encrypted":
                continue
            because = event.get("unsigned", {}).get("redacted_because")
            redacted = int(because["origin_server_ts"]) if because else None
            found[event["event_id"]] = (int(event["origin_server_ts"]), redacted)
        token = page.get("end")
        if not page.get("chunk") or not token:
            return found


async def read_all(member: Raw, rooms: list[str]) -> dict[str, tuple[int, int | None]]:
    gate = asyncio.Semaphore(8)

    async def one(room: str) -> dict[str, tuple[int, int | None]]:
        async with gate:
            return await history(member, room)

    merged: dict[str, tuple[int, int | None]] = {}
    for part in await asyncio.gather(*(one(r) for r in rooms)):
        merged.update(part)
    return merged


def witnessed(
    read_back: dict[str, tuple[int, int | None]], witness: Witness
) -> dict[str, tuple[int, int | None]]:
    """What a member saw: the read-back where the homeserver still serves the event, else
    what the member's sync received (the event, then its redaction if one came). An event
    purged without a redaction the member saw counts as not redacted: its clients keep it."""
    merged = dict(read_back)
    for event_id, origin in witness.messages.items():
        if event_id not in merged:
            merged[event_id] = (origin, witness.redactions.get(event_id))
    return merged


async def bare_redaction_rate(bot: Raw, sender: Raw, rooms: list[str], count: int) -> float:
    """Baseline: a bare client redacting ``count`` fresh events, CONCURRENCY at a time."""
    gate = asyncio.Semaphore(CONCURRENCY)

    async def send(i: int) -> str:
        async with gate:
            return await sender.post(rooms[i % len(rooms)])

    sent = await asyncio.gather(*(send(i) for i in range(count)))

    async def redact(i: int) -> None:
        room = rooms[i % len(rooms)]
        async with gate:
            await bot.call(
                "PUT",
                f"/_matrix/client/v3/rooms/{quote(room)}/redact/{quote(sent[i])}/bare{i}",
                {},
            )

    start = time.monotonic()
    await asyncio.gather(*(redact(i) for i in range(count)))
    return count / (time.monotonic() - start)


async def schedule_counts(db: BotDatabase) -> tuple[int, int]:
    """(entries, pending entries) in the bot's schedule."""
    async with db.sessions() as session:
        query = (
            "SELECT COUNT(*), SUM(CASE WHEN done_ms IS NULL THEN 1 ELSE 0 END) FROM expiry_schedule"
        )
        row = (await session.execute(text(query))).one()
        return int(row[0]), int(row[1] or 0)


async def ack_lateness(db: BotDatabase, when: Timeline) -> tuple[list[float], list[float]]:
    """From the bot's own records: when the homeserver acknowledged each redaction, past
    the due time (while up) and past max(due, return) for what fell due while it was dead."""
    async with db.sessions() as session:
        query = "SELECT due_ms, done_ms FROM expiry_schedule WHERE done_ms IS NOT NULL"
        rows = (await session.execute(text(query))).all()
    up = [(done - due) / 1000 for due, done in rows if not when.killed_at <= due < when.back_at]
    back = [(done - max(due, when.back_at)) / 1000 for due, done in rows if due >= when.killed_at]
    return up, back


async def schedule_ids(db: BotDatabase) -> set[str]:
    async with db.sessions() as session:
        rows = (await session.execute(text("SELECT event_id FROM expiry_schedule"))).all()
    return {str(r[0]) for r in rows}


async def save_schedule(db: BotDatabase, path: Path) -> None:
    """The bot's schedule as CSV (event id, sent, due, acknowledged), to see where the time
    went: joined with the bot's log (when it saw each event), it tells a late sync from a
    slow redaction."""
    query = "SELECT event_id, origin_server_ts, due_ms, done_ms FROM expiry_schedule"
    async with db.sessions() as session:
        rows = (await session.execute(text(query))).all()
    with path.open("w") as handle:
        handle.write("event_id,origin_ms,due_ms,done_ms\n")
        for row in rows:
            handle.write(",".join("" if v is None else str(v) for v in row) + "\n")


def forget_cached_hosts(server_names: list[str]) -> int:
    """Delete what the production homeserver left in Redis's shared cache about these servers.

    Synapse keys its external cache of a room's joined servers by state group number only:
    the next homeserver built on a fresh database reuses those numbers, and would read this
    run's servers for its own rooms (sending its events to servers that no longer exist)."""
    from tests.deploy_stack import REDIS_PORT

    script = (
        "local n=0 for _,k in ipairs(redis.call('KEYS','cache_v1:get_joined_hosts:*')) do "
        "local v=redis.call('GET',k) if v then for i=1,#ARGV do "
        "if string.find(v,ARGV[i],1,true) then redis.call('DEL',k) n=n+1 break end "
        "end end end return n"
    )
    names = [json.dumps(name) for name in server_names]
    done = subprocess.run(
        ["redis-cli", "-p", str(REDIS_PORT), "EVAL", script, "0", *names],
        capture_output=True,
        text=True,
        check=False,
    )
    return int(done.stdout.strip() or 0) if done.returncode == 0 else -1


# -- the run -------------------------------------------------------------------------------


@dataclass
class Timeline:
    """What happened when (ms since the epoch, the homeservers' clock: same machine)."""

    killed_at: int = 0
    back_at: int = 0
    send_s: float = 0.0
    setup_s: float = 0.0


class BotUnderTest(Protocol):
    """The expiry bot as its own process: started (returns once it is ready), killed."""

    async def start(self) -> None: ...

    async def kill(self) -> None: ...

    async def stop(self) -> None: ...


@dataclass
class Setup:
    """What the run needs of a topology: the bot's account (it creates the case rooms, and
    redacts alone for the baseline), a sender on each homeserver, the bot's database."""

    topology: str
    bot: Raw
    alice: Raw
    bob: Raw
    db_url: str
    process: BotUnderTest | None = None


class LocalBot:
    """The engine with a minimal syncing client (tests.expiry_support), in its own process."""

    def __init__(self, config_path: Path, log: Path) -> None:
        self.config_path = config_path
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        self.process = spawn_worker(self.config_path, self.log)
        await wait_ready(self.process)

    async def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)  # kill -9
        await asyncio.to_thread(self.process.wait)

    async def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            await asyncio.to_thread(self.process.wait)


class ProductionBot:
    """`caducee bot run` with the rendered production configuration."""

    def __init__(self, scale: Any) -> None:
        from tests.bench.bench_scale import BotProcess

        self.bot = BotProcess(scale)

    async def start(self) -> None:
        await self.bot.start()

    async def kill(self) -> None:
        process = self.bot.process
        assert process is not None
        process.send_signal(signal.SIGKILL)  # kill -9
        await process.wait()
        self.bot.process = None

    async def stop(self) -> None:
        await self.bot.stop()


@asynccontextmanager
async def local_topology(base: Path, http: aiohttp.ClientSession) -> AsyncIterator[Setup]:
    ports = {name: (free_port(), free_port(), free_port()) for name in "ab"}
    server = {name: f"localhost:{ports[name][0]}" for name in "ab"}
    specs = [
        HomeserverSpec("a", *ports["a"], allowed_servers=(server["b"],), testing=True),
        HomeserverSpec("b", *ports["b"], allowed_servers=(server["a"],), testing=True),
    ]
    federation = LocalFederation(base / "federation", specs)
    await federation.start()
    hs_a, hs_b = federation["a"], federation["b"]
    setup: Setup | None = None
    try:
        bot = await Raw.register(hs_a, http, "expirybot")
        db_url = f"sqlite:///{base / 'bot.db'}"
        setup = Setup(
            "local (SQLite homeservers)",
            bot,
            await Raw.register(hs_a, http, "alice"),
            await Raw.register(hs_b, http, "bob"),
            db_url,
        )
        config_path = base / "worker.json"
        fd = os.open(config_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(
                {
                    "client_url": hs_a.client_url,
                    "server_name": hs_a.server_name,
                    "admin_token": hs_a.admin_token,
                    "account": dataclasses.asdict(bot.user),
                    "db_url": db_url,
                    "token_file": str(base / "sync-token"),
                },
                handle,
            )
        setup.process = LocalBot(config_path, base / "worker.log")
        yield setup
    finally:
        if setup is not None and isinstance(setup.process, LocalBot):
            process = setup.process.process
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()
        federation.stop()


@asynccontextmanager
async def production_topology(base: Path, http: aiohttp.ClientSession) -> AsyncIterator[Setup]:
    """The production homeserver (built fresh, dropped afterwards) and a second one."""
    from bot.config import load_config
    from bot.session import load_session
    from bridge.synapse_admin import SynapseAdmin
    from tests.bench.scale_build import CACHE, scale_setup
    from tests.deploy_stack import drop_database

    key = f"expiry-{os.getpid()}"
    databases: dict[str, str] = {}
    servers: list[str] = []
    bot_process: ProductionBot | None = None
    try:
        async with scale_setup(key, rebuild=True) as scale:
            databases = dict(scale.state["databases"])
            servers = [scale.prod.server_name, scale.peer.server_name]
            rendered = scale.stack.rendered
            assert rendered is not None
            config = load_config(rendered.bot)
            bot_process = ProductionBot(scale)
            await bot_process.start()  # its first start signs it in and keeps its session
            await bot_process.stop()
            session = load_session(config.store_dir, config.user_id)
            if session is None:
                raise RuntimeError("the bot kept no session after its first start")
            account = RegisteredUser(
                session.user_id, session.access_token, session.device_id, "unused"
            )
            bot = Raw(scale.prod, account, http)  # type: ignore[arg-type]  # duck-typed
            alice = await Raw.register(scale.prod, http, "alice")  # type: ignore[arg-type]
            bob = await Raw.register(scale.peer, http, "bob")
            admin = SynapseAdmin(http, scale.stack.main_client_url, scale.state["admin"])
            await admin.exempt_from_rate_limits(alice.user_id)
            yield Setup(
                "production (Synapse main + generic worker + federation sender, "
                "PostgreSQL, Redis; second homeserver on SQLite)",
                bot,
                alice,
                bob,
                config.effective_database_url,
                bot_process,
            )
            await bot_process.stop()
    finally:
        if bot_process is not None:
            with contextlib.suppress(Exception):
                await bot_process.stop()
        with contextlib.suppress(OSError):
            shutil.copy(CACHE / key / "bot.log", base / "bot.log")
        for log in (CACHE / key / "prod" / "synapse" / "logs").glob("*.log"):
            with contextlib.suppress(OSError):  # kept with the bench's files on failure
                shutil.copy(log, base / f"synapse-{log.name}")
        for name in databases.values():
            with contextlib.suppress(Exception):
                await drop_database(name)
        shutil.rmtree(CACHE / key, ignore_errors=True)
        if servers:
            forget_cached_hosts(servers)


async def run(
    events: int, rooms_count: int, downtime_s: float, rate: float, base: Path, topology: str
) -> dict[str, Any]:
    when = Timeline()
    async with (
        aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=64), timeout=aiohttp.ClientTimeout(total=300)
        ) as http,
        (
            production_topology(base, http)
            if topology == "production"
            else local_topology(base, http)
        ) as setup,
    ):
        result = await measure(setup, events, rooms_count, downtime_s, rate, when, base)
    result["topology"] = setup.topology
    return result


async def measure(
    setup: Setup,
    events: int,
    rooms_count: int,
    downtime_s: float,
    rate: float,
    when: Timeline,
    base: Path,
) -> dict[str, Any]:
    bot, alice, bob, bot_process = setup.bot, setup.alice, setup.bob, setup.process
    assert bot_process is not None
    database = await BotDatabase.open(setup.db_url, create=True)
    try:
        cases = BotStore(database)
        rng = random.Random(5)
        lifetimes: dict[str, int] = {}
        gate = asyncio.Semaphore(8)

        async def make_room() -> None:
            async with gate:
                ttl = rng.choice(LIFETIMES_S)
                room = await create_case_room(
                    bot, ttl, [alice, bob], cases, purge_margin_ms=PURGE_MARGIN_MS
                )
                lifetimes[room] = ttl * 1000

        t0 = time.monotonic()
        await asyncio.gather(*(make_room() for _ in range(rooms_count)))
        when.setup_s = time.monotonic() - t0
        rooms = list(lifetimes)
        await bot_process.start()

        sent: dict[str, str] = {}
        send_latency: list[float] = []
        halfway = asyncio.Event()

        async def send_all() -> None:
            send_gate = asyncio.Semaphore(CONCURRENCY)
            start = time.monotonic()

            async def send(i: int) -> None:
                room = rooms[i % len(rooms)]
                async with send_gate:
                    began = time.monotonic()
                    sent[await (alice if i % 2 else bob).post(room)] = room
                    # The homeserver answers once the event is persisted: how far behind
                    # its persistence runs (the bot cannot see an event before that).
                    send_latency.append(time.monotonic() - began)

            tasks = []
            for i in range(events):
                delay = start + i / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(send(i)))
                if i == events // 2:
                    halfway.set()
            await asyncio.gather(*tasks)
            when.send_s = time.monotonic() - start

        async def kill_and_restart() -> None:
            await halfway.wait()
            await bot_process.kill()  # kill -9, mid-run
            when.killed_at = _ms()
            await asyncio.sleep(downtime_s)
            await bot_process.start()
            when.back_at = _ms()

        # Members' clients see each redaction as it comes: the homeserver may purge an
        # expired event (m.room.retention) before the read-back at the end.
        witnesses = [Witness(alice), Witness(bob)]
        for witness in witnesses:
            await witness.start()
        await asyncio.gather(send_all(), kill_and_restart())
        load_while_sending = _load()
        # Wait for the schedule to drain (read from the bot's database, not to load the
        # homeservers), then read what members see once.
        deadline = _ms() + max(LIFETIMES_S) * 1000 + 15 * 60_000
        progress = (-1, _ms())
        while _ms() < deadline:
            await asyncio.sleep(2)
            scheduled, pending = await schedule_counts(database)
            if scheduled >= len(sent) and pending == 0:
                break
            if scheduled - pending != progress[0]:
                progress = (scheduled - pending, _ms())
            elif _ms() - progress[1] > 60_000:
                break  # no progress for a minute: report what is left
        for witness in witnesses:
            await witness.stop()
        read_back = await read_all(alice, rooms)
        seen = witnessed(read_back, witnesses[0])
        remote = witnessed(await read_all(bob, rooms), witnesses[1])
        with (base / "served.csv").open("w") as handle:  # as the bot's server serves them
            handle.write("event_id,origin_ms,redaction_ms\n")
            for event_id, (origin, redacted) in seen.items():
                handle.write(f"{event_id},{origin},{redacted or ''}\n")
        await bot_process.stop()
        baseline_load = _load()
        baseline = await bare_redaction_rate(bot, alice, rooms[:20], 1000)
        in_schedule = await schedule_ids(database)
        await save_schedule(database, base / "schedule.csv")
        acks = await ack_lateness(database, when)
        (base / "timeline.json").write_text(json.dumps(dataclasses.asdict(when)))
    finally:
        await database.close()
    result = report(sent, lifetimes, seen, remote, when, baseline, rooms_count)
    result["never_scheduled"] = sum(1 for e in sent if e not in in_schedule)
    result["purged_before_read_back"] = sum(1 for e in sent if e not in read_back)
    result["engine_ack_lateness_while_up_s"] = summary(acks[0])
    result["engine_ack_lateness_after_back_s"] = summary(acks[1])
    result["send_latency_s"] = summary(send_latency)
    result["load_while_sending"] = load_while_sending
    result["load_at_baseline"] = baseline_load
    return result


def _load() -> str:
    """The machine's load averages (1, 5, 15 min)."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def report(
    sent: dict[str, str],
    lifetimes: dict[str, int],
    seen: dict[str, tuple[int, int | None]],
    remote: dict[str, tuple[int, int | None]],
    when: Timeline,
    baseline: float,
    rooms_count: int,
) -> dict[str, Any]:
    lateness: list[float] = []
    while_up: list[float] = []
    after_back: list[float] = []
    catch_up: list[int] = []
    for event_id, room in sent.items():
        origin, done = seen.get(event_id, (0, None))
        if done is None:
            continue
        due = origin + lifetimes[room]
        lateness.append((done - due) / 1000)
        if when.killed_at <= due < when.back_at:
            catch_up.append(done)  # fell due while the bot was dead
        elif due < when.killed_at or due >= when.back_at:
            while_up.append((done - due) / 1000)
        if due >= when.killed_at:
            after_back.append((done - max(due, when.back_at)) / 1000)
    catch_up_s = (max(catch_up) - when.back_at) / 1000 if catch_up else 0.0
    catch_up_rate = len(catch_up) / catch_up_s if catch_up_s > 0 else 0.0
    return {
        "events": len(sent),
        "rooms": rooms_count,
        "room_setup_s": round(when.setup_s, 1),
        "send_s": round(when.send_s, 1),
        "send_rate_per_s": round(len(sent) / when.send_s, 1) if when.send_s else None,
        "downtime_s": round((when.back_at - when.killed_at) / 1000, 1),
        # Not redacted as members saw them: in the read-back, or, for events the
        # homeservers' retention purged before it (lifetime + margin, in long runs), in
        # their sync. Events neither served nor synced are counted apart.
        "missed_on_bot_server": sum(1 for e in sent if e in seen and seen[e][1] is None),
        "missed_on_remote_server": sum(1 for e in sent if e in remote and remote[e][1] is None),
        "unseen_by_members": sum(1 for e in sent if e not in seen),
        "lateness_s": summary(lateness),
        "lateness_while_up_s": summary(while_up),
        "lateness_after_back_s": summary(after_back),
        "overdue_at_restart": len(catch_up),
        "catch_up_s": round(catch_up_s, 1),
        "catch_up_redactions_per_s": round(catch_up_rate, 1),
        "baseline_bare_redactions_per_s": round(baseline, 1),
        "ratio_catch_up_to_baseline": round(catch_up_rate / baseline, 2) if baseline else None,
    }


def summary(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {
        "p50": round(percentile(values, 50), 2),
        "p99": round(percentile(values, 99), 2),
        "max": round(max(values), 2),
        "n": len(values),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--rooms", type=int, default=200)
    parser.add_argument("--downtime", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=15.0, help="events sent per second")
    parser.add_argument("--topology", choices=("local", "production"), default="local")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(worker(json.loads(args.worker.read_text())))
        return
    tmp = Path(tempfile.mkdtemp(prefix="bench-expiry-"))
    print(f"load at start: {_load()}", flush=True)
    try:
        result = asyncio.run(
            run(args.events, args.rooms, args.downtime, args.rate, tmp, args.topology)
        )
    except BaseException:
        print(f"bench failed; its files are kept in {tmp}", file=sys.stderr)
        raise
    print(json.dumps(result, indent=2))
    up, after = result["lateness_while_up_s"], result["lateness_after_back_s"]
    missed = result["missed_on_bot_server"] + result["missed_on_remote_server"]
    ok = missed == 0 and all(x is not None and x["max"] <= 10.0 for x in (up, after))
    print(f"expiry bench: {'PASS' if ok else 'FAIL'} (0 missed, max lateness <= lifetime + 10 s)")
    if ok:
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        print(f"the bot's log is kept in {tmp}", file=sys.stderr)


if __name__ == "__main__":
    main()
