"""Benchmark: the bot's reply latency in an E2EE DM, and `!case new` across two homeservers.

Both homeservers come from the local launcher (deploy.local). The bridge runs in-process with a
synthetic register of 20 000 activity lines; the Caducée bot runs in-process (its real
runner: cross-signed device, trust decisions, dispatcher, store).

1. ``!find`` latency: a doctor on hs_a sends 200 ``!find`` commands in an encrypted DM with
   the bot and times each until the decrypted reply arrives; interleaved with the same
   command to a bare matrix-nio echo bot (E2EE, same homeserver, replies at once without any
   work) - the same-run baseline. Figures: p50/p95 for each, and the ratio (target <= 1.25).
2. ``!case new`` with 5 invitees (3 on hs_a, 2 on hs_b): from sending the command to the
   fifth invitation seen by the invitees' own clients; p50 over 20 (target <= 500 ms).

Run: ``python -m tests.bench.bench_bot`` (``--finds``/``--cases`` to scale down).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from nio import (
    AsyncClient,
    AsyncClientConfig,
    InviteMemberEvent,
    MatrixRoom,
    RoomMessageText,
)

from bot.app import init_database, production_runner
from bot.config import parse_config
from bot.runner import BotRunner
from deploy.local.federation import Homeserver, HomeserverSpec, LocalFederation
from tests.bench.rpps_synth import generate
from tests.conftest import free_port
from tests.matrix_helpers import Doctor, unique

QUERIES = ("cardiologue lyon", "pédiatre paris", "médecin généraliste marseille", "martin")
BRIDGE_TOKEN = "bench-" + secrets.token_hex(24)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@asynccontextmanager
async def bridge(base: Path, lines: int) -> AsyncIterator[str]:
    """The bridge as in production: its own process (`caducee bridge run`), its directory
    imported from a synthetic register by its importer; yields its URL."""
    from bridge.config import parse_config as bridge_config
    from bridge.db import open_database
    from bridge.directory.importer import import_directory
    from bridge.http.meta_routes import HEALTH_PATH

    port = free_port()
    data = {
        "server_name": "bench.test",
        "homeserver_url": "http://127.0.0.1:9",
        "data_dir": str(base / "bridge"),
        "listen_port": port,
        "service_tokens": [{"name": "bot", "token": BRIDGE_TOKEN}],
        "log_level": "WARNING",
    }
    config = bridge_config(data, base_dir=base)
    extract = base / "extract.txt"
    generate(extract, lines=lines, seed=7)
    db = await open_database(config.effective_database_url, create=True)
    try:
        await import_directory(db, extract)
    finally:
        await db.close()
    path = base / "bridge.yaml"
    path.write_text(yaml.safe_dump(data))
    path.chmod(0o600)
    log = (base / "bridge.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from bridge.cli import bridge_app; bridge_app()",
        "run",
        "--config",
        str(path),
        stdout=log,
        stderr=log,
    )
    log.close()
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            deadline = time.monotonic() + 60
            while True:
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(url + HEALTH_PATH) as response:
                        if response.status == 200:
                            break
                if time.monotonic() > deadline or process.returncode is not None:
                    raise RuntimeError((base / "bridge.log").read_text()[-2000:])
                await asyncio.sleep(0.1)
        yield url
    finally:
        process.terminate()
        await process.wait()


class EchoBot:
    """The baseline: a bare matrix-nio E2EE bot that answers every text with a notice."""

    def __init__(self, client: AsyncClient) -> None:
        self.client = client
        self.task: asyncio.Task[None] | None = None

    @classmethod
    async def start(cls, hs: Homeserver, base: Path) -> EchoBot:
        password = secrets.token_urlsafe(12)
        user = await hs.register_user(unique("echo"), password)
        store = base / unique("echo-store")
        store.mkdir(mode=0o700)
        client = AsyncClient(
            hs.client_url,
            user.user_id,
            device_id=user.device_id,
            store_path=str(store),
            config=AsyncClientConfig(encryption_enabled=True, pickle_key=secrets.token_hex(16)),
        )
        client.restore_login(user.user_id, user.device_id, user.access_token)
        await client.keys_upload()
        echo = cls(client)
        client.add_event_callback(echo.on_message, RoomMessageText)
        client.add_event_callback(echo.on_invite, InviteMemberEvent)
        await client.sync(timeout=0, full_state=True)
        echo.task = asyncio.create_task(client.sync_forever(timeout=30_000))
        return echo

    async def on_invite(self, room: MatrixRoom, event: InviteMemberEvent) -> None:
        if event.state_key == self.client.user_id and event.membership == "invite":
            await self.client.join(room.room_id)

    async def on_message(self, room: MatrixRoom, event: RoomMessageText) -> None:
        if event.sender == self.client.user_id:
            return
        await self.client.room_send(
            room.room_id,
            "m.room.message",
            {"msgtype": "m.notice", "body": f"echo {len(event.body)}"},
            ignore_unverified_devices=True,
        )

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task
        await self.client.close()


async def round_trip(doctor: Doctor, room_id: str, sender: str, body: str) -> float:
    mark = len(doctor.seen)
    started = time.perf_counter()
    await doctor.send(room_id, body)
    await doctor.wait_for_text(sender, after=mark, timeout=30)
    return time.perf_counter() - started


class InviteWatcher:
    """An invitee's client noting when each invitation arrives."""

    def __init__(self, client: AsyncClient) -> None:
        self.client = client
        self.seen: dict[str, float] = {}
        self.task: asyncio.Task[None] | None = None

    async def on_invite(self, room: MatrixRoom, event: InviteMemberEvent) -> None:
        if event.state_key == self.client.user_id and event.membership == "invite":
            self.seen.setdefault(room.room_id, time.perf_counter())


async def invitee(hs: Homeserver) -> InviteWatcher:
    user = await hs.register_user(unique("invitee"), secrets.token_urlsafe(12))
    client = AsyncClient(hs.client_url, user.user_id, device_id=user.device_id)
    client.restore_login(user.user_id, user.device_id, user.access_token)
    watcher = InviteWatcher(client)
    client.add_event_callback(watcher.on_invite, InviteMemberEvent)
    await client.sync(timeout=0)
    watcher.task = asyncio.create_task(client.sync_forever(timeout=30_000))
    return watcher


async def run(finds: int, cases: int, lines: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="caducee-bench-bot-") as tmp:
        base = Path(tmp)
        ports = {name: (free_port(), free_port(), free_port()) for name in "ab"}
        server = {name: f"localhost:{ports[name][0]}" for name in "ab"}
        specs = [
            HomeserverSpec("a", *ports["a"], allowed_servers=(server["b"],), testing=True),
            HomeserverSpec("b", *ports["b"], allowed_servers=(server["a"],), testing=True),
        ]
        federation = LocalFederation(base / "federation", specs)
        await federation.start()
        hs_a, hs_b = federation["a"], federation["b"]
        try:
            async with bridge(base, lines) as bridge_url:
                return await measure(hs_a, hs_b, base, bridge_url, finds, cases)
        finally:
            federation.stop()


async def measure(
    hs_a: Homeserver, hs_b: Homeserver, base: Path, bridge_url: str, finds: int, cases: int
) -> dict[str, Any]:
    password = secrets.token_urlsafe(16)
    localpart = unique("caducee")
    await hs_a.register_user(localpart, password)
    config = parse_config(
        {
            "homeserver_url": hs_a.client_url,
            "user_id": f"@{localpart}:{hs_a.server_name}",
            "password": password,
            "store_dir": str(base / "bot" / "store"),
            "pickle_key_file": str(base / "bot" / "pickle-key"),
            "bridge_url": bridge_url,
            "bridge_token": BRIDGE_TOKEN,
            "member_servers": [hs_a.server_name, hs_b.server_name],
            "log_level": "WARNING",
        },
        base_dir=base,
    )
    await init_database(config)  # `caducee bot init`
    bot = production_runner(config)
    await bot.start()
    echo = await EchoBot.start(hs_a, base)
    doctor = await Doctor.create(hs_a, base)
    watchers: list[InviteWatcher] = []
    try:
        bot_room = await doctor.dm(bot.user_id)
        echo_room = await doctor.dm(echo.client.user_id)
        for _ in range(3):  # warm-up: sessions shared, keys queried, caches filled
            await round_trip(doctor, bot_room, bot.user_id, "!find " + QUERIES[0])
            await round_trip(doctor, echo_room, echo.client.user_id, "!find " + QUERIES[0])
        phases = instrument(bot)
        bot_times: list[float] = []
        echo_times: list[float] = []
        for i in range(finds):
            query = "!find " + QUERIES[i % len(QUERIES)]
            bot_times.append(await round_trip(doctor, bot_room, bot.user_id, query))
            echo_times.append(await round_trip(doctor, echo_room, echo.client.user_id, query))
        for name in ("send_notice", "directory search", "claim (db)"):
            phases[f"!find: {name}"] = phases[name]
            phases[name] = []

        watchers = [await invitee(hs) for hs in (hs_a, hs_a, hs_a, hs_b, hs_b)]
        who = " ".join(str(w.client.user_id) for w in watchers)
        case_times: list[float] = []
        for i in range(cases):
            mark = len(doctor.seen)
            started = time.perf_counter()
            await doctor.send(bot_room, f"!case new Avis-{i} {who}")
            reply = await doctor.wait_for_text(bot.user_id, after=mark, timeout=60)
            room_id = "!" + reply.body.split("/#/!", 1)[1].split("?", 1)[0].split()[0]
            room_id = room_id.replace("%3A", ":")
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 30
            while not all(room_id in w.seen for w in watchers):
                if loop.time() > deadline:
                    raise AssertionError(f"not every invitee saw {room_id}: {reply.body}")
                await asyncio.sleep(0.005)
            case_times.append(max(w.seen[room_id] for w in watchers) - started)
    finally:
        for w in watchers:
            if w.task is not None:
                w.task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await w.task
            await w.client.close()
        await doctor.close()
        await echo.stop()
        await bot.stop()
    return {
        "find_bot_ms": [t * 1000 for t in bot_times],
        "find_echo_ms": [t * 1000 for t in echo_times],
        "case_new_ms": [t * 1000 for t in case_times],
        "phases_ms": {k: [t * 1000 for t in v] for k, v in phases.items()},
    }


def instrument(bot: BotRunner) -> dict[str, list[float]]:
    """Time the shell's parts of `!case new` (room creation, waiting for the room to sync,
    each invitation) by wrapping the actions object the dispatcher holds."""
    actions: Any = bot.actions
    phases: dict[str, list[float]] = {
        "create_room": [],
        "room_synced": [],
        "invite": [],
        "send_notice": [],
    }

    def timed(name: str, func: Any) -> Any:
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await func(*args, **kwargs)
            finally:
                phases[name].append(time.perf_counter() - started)

        return wrapper

    from bot.bridge_client import DirectoryClient
    from bot.store import BotStore

    for cls, method, name in (
        (DirectoryClient, "search", "directory search"),
        (BotStore, "claim_command", "claim (db)"),
    ):
        original = getattr(cls, method)
        phases[name] = []

        def bound(original: Any = original, name: str = name) -> Any:
            inner = timed(name, original)

            async def method_wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
                return await inner(self, *args, **kwargs)

            return method_wrapper

        setattr(cls, method, bound())
    actions.create_room = timed("create_room", actions.create_room)
    actions.send_notice = timed("send_notice", actions.send_notice)
    actions._wait_for_room = timed("room_synced", actions._wait_for_room)
    actions.invite = timed("invite", actions.invite)
    return phases


def report(results: dict[str, Any]) -> None:
    bot, echo, case = results["find_bot_ms"], results["find_echo_ms"], results["case_new_ms"]
    bp50, bp95 = percentile(bot, 0.5), percentile(bot, 0.95)
    ep50, ep95 = percentile(echo, 0.5), percentile(echo, 0.95)
    print(f"!find in an E2EE DM, {len(bot)} commands (doctor and bots on hs_a):")
    print(f"  Caducée bot: p50 {bp50:6.1f} ms  p95 {bp95:6.1f} ms  mean {statistics.mean(bot):.1f}")
    print(
        f"  nio echo:    p50 {ep50:6.1f} ms  p95 {ep95:6.1f} ms  mean {statistics.mean(echo):.1f}"
    )
    print(f"  ratio p50 {bp50 / ep50:.2f}x  p95 {bp95 / ep95:.2f}x  (target <= 1.25x)")
    if case:
        cp50, cmax = percentile(case, 0.5), max(case)
        print(f"!case new with 5 invitees (3 on hs_a, 2 on hs_b), {len(case)} cases:")
        print(f"  command -> all invited: p50 {cp50:.0f} ms  max {cmax:.0f} ms (target p50 <= 500)")
        for name, values in results["phases_ms"].items():
            if values:
                print(f"    {name:24s} p50 {percentile(values, 0.5):6.1f} ms  (n={len(values)})")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.bench_bot")
    parser.add_argument("--finds", type=int, default=200)
    parser.add_argument("--cases", type=int, default=20)
    parser.add_argument("--lines", type=int, default=20_000)
    args = parser.parse_args(argv)
    report(asyncio.run(run(args.finds, args.cases, args.lines)))


if __name__ == "__main__":
    main()
