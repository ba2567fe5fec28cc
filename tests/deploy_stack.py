"""The production topology as processes, for tests: no Docker engine exists on these machines.

`ProductionStack` renders the production configuration (deploy.production.render, the same
code as `caducee deploy render`) for loopback ports and a fresh PostgreSQL database, then
starts Synapse's main process, its generic worker and its federation sender, with the
machine's Redis, and the bridge (`caducee bridge run`), whose registry the guards follow.
`RoutingProxy` stands in for Caddy: it routes with the same route table the Caddyfile is
generated from, serves TLS on the server name's port (federation, private CA) and plain HTTP
for local clients, and records which upstream served each request.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import ssl
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from yarl import URL

from bridge.http.meta_routes import HEALTH_PATH
from deploy.local.ca import CertPaths
from deploy.local.process import ManagedProcess
from deploy.local.services import wait_for_allow_list, wait_for_log_line
from deploy.production.envfile import SECRET_KEYS
from deploy.production.render import Rendered, Tuning, bridge_url, prepare_data_dirs, render
from deploy.production.routes import Upstream, route
from deploy.production.settings import Endpoint, Settings, Topology, Worker

PG_HOST = os.environ.get("CADUCEE_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("CADUCEE_TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("CADUCEE_TEST_PG_USER", "postgres")
REDIS_PORT = int(os.environ.get("CADUCEE_TEST_REDIS_PORT", "6379"))
CADUCEE = [sys.executable, "-c", "from deploy.cli import main; main()"]

HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailers",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
}


def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
        return True
    return False


def services_missing() -> str | None:
    """Why the production topology cannot run here, or None when PostgreSQL and Redis answer."""
    if not port_open(PG_PORT, PG_HOST):
        return f"no PostgreSQL server answers at {PG_HOST}:{PG_PORT}"
    if not port_open(REDIS_PORT):
        return f"no Redis server answers at 127.0.0.1:{REDIS_PORT}"
    return None


async def create_database(name: str, *, synapse: bool = False) -> None:
    """A fresh database; Synapse's needs the C collation (template0), as Synapse requires."""
    import asyncpg

    conn = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, database="postgres")
    try:
        options = (
            " ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0" if synapse else ""
        )
        await conn.execute(f'CREATE DATABASE "{name}"{options}')
    finally:
        await conn.close()


async def drop_database(name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, database="postgres")
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def stack_settings(server_name: str, members: tuple[str, ...]) -> Settings:
    values = {name: secrets.token_hex(16) for name in SECRET_KEYS}
    values["POSTGRES_PASSWORD"] = ""  # the machine's PostgreSQL trusts loopback
    values["REDIS_PASSWORD"] = ""  # and its Redis has no password
    return Settings(
        server_name=server_name,
        matrix_host=server_name,
        element_host="element.invalid",
        admin_email="admin@invalid.test",
        federation_name="Test federation",
        members=members,
        bot_localpart="caducee",
        secrets=values,
    )


def stack_topology(base: Path, databases: dict[str, str]) -> Topology:
    local = "127.0.0.1"
    return Topology(
        bind=local,
        main_client=Endpoint(local, free_port()),
        main_federation=Endpoint(local, free_port()),
        main_replication=Endpoint(local, free_port()),
        main_metrics_port=free_port(),
        workers=(
            Worker(
                "generic_worker1",
                "generic",
                Endpoint(local, free_port()),
                replication=Endpoint(local, free_port()),
                writes_events=True,
            ),
            Worker("federation_sender1", "federation_sender", None, Endpoint(local, free_port())),
        ),
        redis=Endpoint(local, REDIS_PORT),
        postgres=Endpoint(PG_HOST, PG_PORT),
        bridge=Endpoint(local, free_port()),
        config_dir=base / "etc",
        synapse_data_dir=base / "synapse",
        bridge_data_dir=base / "bridge",
        bot_data_dir=base / "bot",
        databases=databases,
        postgres_user=PG_USER,
    )


def synapse_process(
    name: str, args: list[str], health_url: str, log: Path, cwd: Path
) -> ManagedProcess:
    """A Synapse process (`python -m <args>`) of the production topology."""
    return ManagedProcess(name, [sys.executable, "-m", *args], log, health_url, cwd=cwd)


@dataclass
class ProductionStack:
    """Synapse main + generic worker + federation sender on PostgreSQL and Redis, and the
    bridge, started in compose's order (the bridge once Synapse is healthy)."""

    settings: Settings
    topology: Topology
    tuning: Tuning
    rendered: Rendered | None = None
    processes: list[ManagedProcess] = field(default_factory=list)

    @property
    def main_client_url(self) -> str:
        endpoint = self.topology.main_client
        return f"http://{endpoint.host}:{endpoint.port}"

    @property
    def bridge_url(self) -> str:
        return bridge_url(self.topology)

    def synapse_logs(self) -> dict[str, Path]:
        """Each Synapse process's log file (where its guard says which list it loaded)."""
        logs = self.topology.synapse_data_dir / "logs"
        return {
            name: logs / f"{name}.log"
            for name in ["main", *(w.name for w in self.topology.workers)]
        }

    def render(self) -> Rendered:
        prepare_data_dirs(self.topology)
        self.rendered = render(self.settings, self.topology, self.topology.config_dir, self.tuning)
        return self.rendered

    def with_databases(self, databases: dict[str, str]) -> ProductionStack:
        """The same deployment pointed at other databases (restore into fresh ones)."""
        return replace(self, topology=replace(self.topology, databases=databases), processes=[])

    async def start(self) -> None:
        rendered = self.rendered or self.render()
        data = self.topology.synapse_data_dir
        main = synapse_process(
            "synapse-main",
            ["synapse.app.homeserver", "-c", str(rendered.homeserver)],
            f"{self.main_client_url}/health",
            data / "main.stdout",
            data,
        )
        self.processes = [main]
        main.launch()
        async with aiohttp.ClientSession() as http:
            await main.wait_ready(http)  # the schema exists before workers connect
            for worker in self.topology.workers:
                endpoint = worker.http or worker.health
                assert endpoint is not None
                process = synapse_process(
                    worker.name,
                    [
                        "synapse.app.generic_worker",
                        "-c",
                        str(rendered.homeserver),
                        "-c",
                        str(rendered.workers[worker.name]),
                    ],
                    f"http://{endpoint.host}:{endpoint.port}/health",
                    data / f"{worker.name}.stdout",
                    data,
                )
                self.processes.append(process)
                process.launch()
            await asyncio.gather(*(p.wait_ready(http) for p in self.processes[1:]))
            bridge_data = self.topology.bridge_data_dir
            init = [*CADUCEE, "bridge", "init", "--config", str(rendered.bridge)]
            await asyncio.to_thread(subprocess.run, init, check=True, capture_output=True)
            bridge = ManagedProcess(
                "bridge",
                [*CADUCEE, "bridge", "run", "--config", str(rendered.bridge)],
                bridge_data / "bridge.stdout",
                self.bridge_url + HEALTH_PATH,
                cwd=bridge_data,
            )
            self.processes.append(bridge)
            bridge.launch()
            await bridge.wait_ready(http)

    async def wait_guards_follow(self, servers: set[str], timeout: float = 60.0) -> str:
        """Wait until the bridge's allow-list holds `servers` and the guard of every Synapse
        process has loaded that version of it; return the version."""
        async with aiohttp.ClientSession() as http:
            version = await wait_for_allow_list(http, self.bridge_url, servers, timeout)
        running = {p.name: p for p in self.processes}
        for name, log in self.synapse_logs().items():
            process = running.get("synapse-main" if name == "main" else name)
            await wait_for_log_line(
                log,
                f"Allow-list version {version}",
                name=name,
                process=process.process if process else None,
                timeout=timeout,
            )
        return version

    def stop(self) -> None:
        """SIGTERM to every process at once (bridge, then workers first), then wait for each."""
        for process in reversed(self.processes):
            process.terminate()
        for process in reversed(self.processes):
            process.wait_stopped()

    def logs(self) -> str:
        return "\n".join(f"== {p.name}\n{p.log_tail(40)}" for p in self.processes)


class RoutingProxy:
    """Caddy's role in tests: one route table, TLS for federation, plain HTTP for clients."""

    def __init__(self, topology: Topology, tls_port: int, plain_port: int, cert: CertPaths):
        worker = topology.generic_workers[0].http
        assert worker is not None
        self.upstreams: dict[Upstream, str] = {
            Upstream.WORKER: f"http://{worker.host}:{worker.port}",
            Upstream.FEDERATION: (
                f"http://{topology.main_federation.host}:{topology.main_federation.port}"
            ),
            Upstream.MAIN: f"http://{topology.main_client.host}:{topology.main_client.port}",
        }
        self.tls_port = tls_port
        self.plain_port = plain_port
        self.cert = cert
        self.served: Counter[tuple[Upstream, str]] = Counter()
        self._runner: web.AppRunner | None = None
        self._http: aiohttp.ClientSession | None = None

    @property
    def client_url(self) -> str:
        return f"http://127.0.0.1:{self.plain_port}"

    def count(self, upstream: Upstream, fragment: str = "") -> int:
        return sum(
            n for (up, path), n in self.served.items() if up is upstream and fragment in path
        )

    async def start(self) -> None:
        self._http = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, sock_read=120),
            auto_decompress=False,
        )
        app = web.Application(client_max_size=100 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert.cert, self.cert.key)
        await web.TCPSite(self._runner, "127.0.0.1", self.tls_port, ssl_context=context).start()
        await web.TCPSite(self._runner, "127.0.0.1", self.plain_port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._http is not None:
            await self._http.close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        upstream = route(request.path, request.method)
        self.served[(upstream, request.path)] += 1
        if upstream is Upstream.BLOCKED:
            return web.Response(status=404, text="Not found")
        assert self._http is not None
        headers: dict[str, Any] = {
            k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP
        }
        headers["X-Forwarded-For"] = request.remote or "127.0.0.1"
        headers["X-Forwarded-Proto"] = "https" if request.secure else "http"
        body = await request.read()
        # The raw request target, byte for byte: federation requests sign their URI.
        url = URL(self.upstreams[upstream] + request.raw_path, encoded=True)
        try:
            async with self._http.request(
                request.method, url, headers=headers, data=body or None, allow_redirects=False
            ) as answer:
                response = web.StreamResponse(status=answer.status, reason=answer.reason)
                for key, value in answer.headers.items():
                    if key.lower() not in HOP_BY_HOP:
                        response.headers.add(key, value)
                await response.prepare(request)
                async for chunk in answer.content.iter_chunked(65536):
                    await response.write(chunk)
                await response.write_eof()
                return response
        except aiohttp.ClientConnectionError:
            # An upstream that is down (tests stop Synapse for a restore): what Caddy answers.
            return web.Response(status=502, text="Bad gateway")
