"""The federation-size setup of `bench scale`, built once and cached between runs.

Production topology as processes (tests/deploy_stack.py: Synapse main + generic worker +
federation sender on PostgreSQL and Redis, the bridge, a proxy routing like the Caddyfile)
with production rate limits (the bot exempted by Synapse's per-account override, as the
operator guide says), and a second homeserver federating with it. Practitioners on both, the
Caducée bot and a bare nio echo bot in R encrypted rooms: DMs (one per practitioner, up to
R) and case rooms of 3-6 members across both homeservers.

The cache (``$CADUCEE_BENCH_CACHE`` or ``~/.cache/caducee-bench``, one folder per size)
holds the ports, secrets, data folders and the names of the PostgreSQL databases; a re-run
starts the same processes on them and skips the build. ``--rebuild`` starts over.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import secrets
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp

from bridge.synapse_admin import SynapseAdmin
from deploy.local.ca import ensure_server_cert
from deploy.local.federation import Homeserver, HomeserverSpec, LocalFederation, RegisteredUser
from deploy.production.render import Tuning
from deploy.production.settings import Endpoint, Topology, Worker
from tests.deploy_stack import (
    CADUCEE,
    PG_HOST,
    PG_PORT,
    PG_USER,
    REDIS_PORT,
    ProductionStack,
    RoutingProxy,
    create_database,
    drop_database,
    free_port,
    stack_settings,
)
from tests.matrix_helpers import ENCRYPTION

CACHE = Path(os.environ.get("CADUCEE_BENCH_CACHE", Path.home() / ".cache" / "caducee-bench"))
PORT_NAMES = (
    *("tls", "plain", "peer_client", "peer_federation", "peer_extra"),
    *("main_client", "main_federation", "main_replication", "metrics"),
    *("worker", "worker_replication", "sender", "bridge"),
)
PEER_SHARE = 0.3  # practitioners on the second homeserver
PEER_MEMBER = "Hôpital du pair"


@dataclass
class ProdHomeserver:
    """The production homeserver as clients see it (the proxy), with its admin side."""

    server_name: str
    client_url: str
    admin_url: str
    shared_secret: str

    async def register_user(self, localpart: str, password: str) -> RegisteredUser:
        async with aiohttp.ClientSession() as http:
            session = await SynapseAdmin(http, self.admin_url).register(
                self.shared_secret, localpart, password
            )
        return RegisteredUser(session.user_id, session.access_token, session.device_id, password)


@dataclass
class Scale:
    base: Path
    state: dict[str, Any]
    stack: ProductionStack
    proxy: RoutingProxy
    prod: ProdHomeserver
    peer: Homeserver

    @property
    def bot_id(self) -> str:
        return f"@{self.stack.settings.bot_localpart}:{self.prod.server_name}"

    def hs(self, where: str) -> ProdHomeserver | Homeserver:
        return self.prod if where == "prod" else self.peer


def _topology(base: Path, databases: dict[str, str], p: dict[str, int]) -> Topology:
    local = "127.0.0.1"
    return Topology(
        bind=local,
        main_client=Endpoint(local, p["main_client"]),
        main_federation=Endpoint(local, p["main_federation"]),
        main_replication=Endpoint(local, p["main_replication"]),
        main_metrics_port=p["metrics"],
        workers=(
            Worker(
                "generic_worker1",
                "generic",
                Endpoint(local, p["worker"]),
                replication=Endpoint(local, p["worker_replication"]),
                writes_events=True,
            ),
            Worker("federation_sender1", "federation_sender", None, Endpoint(local, p["sender"])),
        ),
        redis=Endpoint(local, REDIS_PORT),
        postgres=Endpoint(PG_HOST, PG_PORT),
        bridge=Endpoint(local, p["bridge"]),
        config_dir=base / "etc",
        synapse_data_dir=base / "synapse",
        bridge_data_dir=base / "bridge",
        bot_data_dir=base / "bot",
        databases=databases,
        postgres_user=PG_USER,
    )


def _empty(base: Path) -> None:
    if base.exists():
        shutil.rmtree(base)
    base.mkdir(parents=True, mode=0o700)


async def _fresh_state(base: Path, key: str) -> dict[str, Any]:
    _empty(base)
    ports = {name: free_port() for name in PORT_NAMES}
    databases = {w: f"caducee_bench_{key}_{w}" for w in ("synapse", "bridge", "bot")}
    for which, name in databases.items():
        with contextlib.suppress(Exception):
            await drop_database(name)
        await create_database(name, synapse=which == "synapse")
    settings = stack_settings(f"localhost:{ports['tls']}", ("peer",))
    return {"ports": ports, "databases": databases, "secrets": settings.secrets, "built": False}


def save(scale: Scale) -> None:
    path = scale.base / "state.json"
    path.write_text(json.dumps(scale.state))
    path.chmod(0o600)


@asynccontextmanager
async def scale_setup(key: str, *, rebuild: bool) -> AsyncIterator[Scale]:
    """Start (building the processes' data the first time) the cached setup named `key`."""
    base = CACHE / key
    state_file = base / "state.json"
    if rebuild or not state_file.exists():
        state = await _fresh_state(base, key)
    else:
        state = json.loads(state_file.read_text())
        for name in PORT_NAMES:  # a listener added since the cache was built
            state["ports"].setdefault(name, free_port())
    p = state["ports"]
    prod_name = f"localhost:{p['tls']}"
    peer_spec = HomeserverSpec(
        "peer",
        p["peer_client"],
        p["peer_federation"],
        p["peer_extra"],
        allowed_servers=(prod_name,),
        testing=True,
    )
    federation = LocalFederation(base / "peer", [peer_spec])
    ca = federation["peer"].ca
    settings = replace(
        stack_settings(prod_name, (peer_spec.server_name,)), secrets=state["secrets"]
    )
    tuning = Tuning(
        testing=True,  # fast password hashing and jobs; rate limits stay production's:
        relaxed_rate_limits=False,
        ca_cert=ca.cert,
        ip_range_whitelist=("127.0.0.1/32", "::1/128"),
        bot_homeserver_url=f"http://127.0.0.1:{p['plain']}",
        extra_guard_config={"refresh_seconds": 5},
    )
    stack = ProductionStack(settings, _topology(base / "prod", state["databases"], p), tuning)
    proxy = RoutingProxy(stack.topology, p["tls"], p["plain"], ensure_server_cert(ca, base))
    prod = ProdHomeserver(
        prod_name,
        proxy.client_url,
        stack.main_client_url,
        settings.secrets["SYNAPSE_REGISTRATION_SHARED_SECRET"],
    )
    scale = Scale(base, state, stack, proxy, prod, federation["peer"])
    try:
        await proxy.start()
        await asyncio.gather(federation.start(), stack.start())
        if "admin" not in state:
            await _first_start(scale, peer_spec.server_name)
        assert stack.rendered is not None
        await _caducee("bot", "init", "--config", str(stack.rendered.bot))  # idempotent
        await stack.wait_guards_follow({prod_name, peer_spec.server_name}, timeout=120)
        yield scale
    finally:
        stack.stop()
        federation.stop()
        await proxy.stop()


async def _caducee(*args: str) -> None:
    process = await asyncio.create_subprocess_exec(
        *CADUCEE, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    _, err = await asyncio.wait_for(process.communicate(), 300)
    if process.returncode != 0:
        raise RuntimeError(f"caducee {' '.join(args)}: {err.decode()[-500:]}")


async def _first_start(scale: Scale, peer_name: str) -> None:
    """The operator's steps: member homeserver, bot account with its rate-limit override."""
    rendered = scale.stack.rendered
    assert rendered is not None
    await _caducee("admin", "member", "add", PEER_MEMBER, "-c", str(rendered.bridge))
    await _caducee(
        "admin", "homeserver", "add", peer_name, "--member", PEER_MEMBER, "-c", str(rendered.bridge)
    )
    # The deployment's own step: the bot's account, exempted from per-account rate limits.
    await _caducee("deploy", "bot-account", "--config", str(rendered.manifest))
    async with aiohttp.ClientSession() as http:  # the benchmark's own admin (joined rooms)
        admin = await SynapseAdmin(http, scale.stack.main_client_url).register(
            scale.prod.shared_secret, "benchadmin", secrets.token_urlsafe(16), admin=True
        )
    scale.state["admin"] = admin.access_token
    save(scale)


async def bounded(limit: int, jobs: list[Callable[[], Awaitable[Any]]]) -> list[Any]:
    gate = asyncio.Semaphore(limit)

    async def one(job: Callable[[], Awaitable[Any]]) -> Any:
        async with gate:
            return await job()

    return await asyncio.gather(*(one(j) for j in jobs))


async def api(
    http: aiohttp.ClientSession, url: str, token: str, method: str, path: str, body: Any = None
) -> dict[str, Any]:
    """One client-API call, waiting out 429s (the build runs as people, with their limits)
    and 502s (the other homeserver refused a federation request with its own 429: a burst of
    invitations across homeservers meets `rc_federation`, as it would between members)."""
    for _ in range(60):
        async with http.request(
            method,
            url + path,
            json=body,
            headers={"Authorization": f"Bearer {token}"},
        ) as response:
            data: dict[str, Any] = await response.json(content_type=None)
            if response.status == 429:
                await asyncio.sleep(min(10.0, data.get("retry_after_ms", 1000) / 1000))
                continue
            if response.status == 502:
                await asyncio.sleep(2.0)
                continue
            if response.status != 200:
                raise RuntimeError(f"{method} {path}: {response.status} {data}")
            return data
    raise RuntimeError(f"{method} {path}: still rate-limited")


async def build(
    scale: Scale, practitioners: int, rooms: int, echo_id: str, *, for_s: float | None = None
) -> float:
    """Accounts and rooms (skipped when cached); returns the build time in seconds.

    Every practitioner is on the production homeserver and has a DM with the bot there (a
    doctor of another homeserver talks to that homeserver's bot); a further PEER_SHARE of
    them, on the second homeserver, are members of case rooms. Case rooms are created on the
    production homeserver, as `!case new` does: an invitation *to* the bot over federation
    counts against `rc_invites.per_user` of the bot as recipient (5, then one per 5 min),
    which no override lifts. Peer members join over federation.

    Resumable: the accounts and each room made are saved as they come, so an interrupted
    build goes on where it stopped. With `for_s`, no room is started after that many seconds
    of this run: the measures then run on the rooms made so far (`state["dms"]`,
    `state["cases"]`), and the next run goes on building.
    """
    if scale.state.get("built"):
        return float(scale.state["build_s"])
    started = time.perf_counter() - float(scale.state.get("build_s", 0.0))
    rng = random.Random(16)
    on_peer = int(practitioners * PEER_SHARE) if rooms > practitioners else 0
    wheres = ["prod"] * practitioners + ["peer"] * on_peer

    async def register(i: int, where: str) -> dict[str, str]:
        user = await scale.hs(where).register_user(f"doc{i:05d}", secrets.token_urlsafe(12))
        return {"user_id": user.user_id, "token": user.access_token, "where": where}

    accounts: list[dict[str, str]] = scale.state.get("accounts") or await bounded(
        4, [lambda i=i, w=w: register(i, w) for i, w in enumerate(wheres)]
    )
    made: dict[str, str] = scale.state.setdefault("made", {})  # plan index -> room id
    scale.state.update(accounts=accounts, build_s=time.perf_counter() - started)
    save(scale)
    local = accounts[:practitioners]
    dms = min(practitioners, rooms)
    plans: list[tuple[dict[str, str], list[dict[str, str]], str | None]] = [
        (local[i], [], None) for i in range(dms)
    ]
    for k in range(rooms - dms):
        creator = rng.choice(local)
        others = [m for m in rng.sample(accounts, rng.randint(1, 4)) if m is not creator]
        plans.append((creator, others, f"Case {k}"))  # + creator, bot, echo: 3-7 members
    refused: list[str] = []
    async with aiohttp.ClientSession() as http:

        async def make(
            creator: dict[str, str], others: list[dict[str, str]], name: str | None
        ) -> str:
            body: dict[str, Any] = {
                "invite": [scale.bot_id, echo_id, *(o["user_id"] for o in others)],
                "initial_state": [ENCRYPTION],
                "preset": "private_chat",
            }
            body.update({"name": name} if name else {"is_direct": True})
            path = "/_matrix/client/v3/createRoom"
            made = await api(http, scale.prod.client_url, creator["token"], "POST", path, body)
            room_id = str(made["room_id"])
            for other in others:
                path = f"/_matrix/client/v3/join/{room_id}"
                try:
                    url = scale.hs(other["where"]).client_url
                    await api(http, url, other["token"], "POST", path, {})
                except RuntimeError as exc:  # counted and shown: a refused join is a finding
                    refused.append(str(exc)[:300])
            return room_id

        deadline = None if for_s is None else time.perf_counter() + for_s

        async def make_once(index: int) -> str | None:
            if str(index) not in made:
                if deadline is not None and time.perf_counter() > deadline:
                    return None
                made[str(index)] = await make(*plans[index])
                if len(made) % 25 == 0:
                    scale.state["build_s"] = time.perf_counter() - started
                    save(scale)
            return made[str(index)]

        room_ids = await bounded(6, [lambda i=i: make_once(i) for i in range(len(plans))])
    scale.state.update(
        dms=[r for r in room_ids[:dms] if r is not None],
        cases=[r for r in room_ids[dms:] if r is not None],
        built=None not in room_ids,
        joins_refused=refused,
        build_s=time.perf_counter() - started,
    )
    save(scale)
    return float(scale.state["build_s"])


async def joined_rooms(scale: Scale, user_id: str) -> set[str]:
    async with aiohttp.ClientSession() as http:
        rooms = await SynapseAdmin(
            http, scale.stack.main_client_url, scale.state["admin"]
        ).joined_rooms(user_id)
    return set(rooms)
