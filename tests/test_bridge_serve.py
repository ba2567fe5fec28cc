"""The bridge as a running service: metrics, the real listener, `bridge run` in a subprocess."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
from pathlib import Path

import aiohttp
import pytest
import yaml

from bridge.http.directory_routes import SEARCH_PATH
from bridge.http.metrics import METRICS
from bridge.http.server import StartupError, serve
from tests.bridge_http_support import (
    SERVICE_TOKEN,
    bridge_config,
    init_database,
    running_bridge,
)

BOT = {"Authorization": f"Bearer {SERVICE_TOKEN}"}
OPENAPI_PREFIX = "/_caducee/v1"


async def test_metrics_count_routes_by_template_without_query_text(tmp_path: Path) -> None:
    async with running_bridge(bridge_config(tmp_path)) as client:
        await client.get(SEARCH_PATH, params={"q": "dupont-secret"}, headers=BOT)
        await client.get(SEARCH_PATH, params={"q": "x"})
        await client.get("/no/such/path-secret")
        rendered = client.app[METRICS].render().decode()
    assert f'route="{SEARCH_PATH}",status="200"' in rendered
    assert f'route="{SEARCH_PATH}",status="401"' in rendered
    assert 'route="unmatched",status="404"' in rendered
    assert "secret" not in rendered


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_serve_listens_logs_paths_only_and_stops(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port, metrics_port = free_port(), free_port()
    config = bridge_config(tmp_path, listen_port=port, metrics_port=metrics_port)
    await init_database(config)
    stop = asyncio.Event()
    with caplog.at_level(logging.INFO):
        task = asyncio.create_task(serve(config, stop))
        async with aiohttp.ClientSession() as http:
            health = f"http://127.0.0.1:{port}{OPENAPI_PREFIX}/health"
            for _ in range(100):  # wait until it listens, with a deadline
                try:
                    async with http.get(health) as response:
                        assert response.status == 200
                        break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.05)
            else:
                pytest.fail("bridge did not start listening")
            url = f"http://127.0.0.1:{port}{SEARCH_PATH}"
            async with http.get(url, params={"q": "durand-secret"}, headers=BOT) as response:
                assert response.status == 200
            async with http.get(f"http://127.0.0.1:{metrics_port}/metrics") as response:
                assert "caducee_bridge_http_requests_total" in await response.text()
        stop.set()
        await asyncio.wait_for(task, 15)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert f"GET {SEARCH_PATH} 200" in logged
    assert "durand-secret" not in logged
    assert SERVICE_TOKEN not in logged


async def test_serve_refuses_to_start_without_its_database(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    url = f"postgresql+asyncpg://caducee:pw-123@127.0.0.1:{port}/bridge"
    config = bridge_config(tmp_path, database_url=url, listen_port=free_port())
    with pytest.raises(StartupError, match=r"cannot reach the database") as info:
        await serve(config, asyncio.Event())
    assert "pw-123" not in str(info.value)


async def test_serve_reports_a_busy_port_clearly(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        config = bridge_config(tmp_path, listen_port=sock.getsockname()[1])
        await init_database(config)
        with pytest.raises(StartupError, match=r"cannot listen on 127\.0\.0\.1:\d+"):
            await serve(config, asyncio.Event())


@pytest.mark.slow  # a real `caducee bridge run` process
async def test_cli_run_serves_until_sigterm_then_exits_0(tmp_path: Path) -> None:
    port = free_port()
    config_path = tmp_path / "bridge.yaml"
    config_path.write_text(
        yaml.safe_dump(
            {
                "server_name": "clinic.test",
                "homeserver_url": "http://127.0.0.1:9",
                "listen_port": port,
                "service_tokens": [{"name": "bot", "token": SERVICE_TOKEN}],
            }
        ),
        encoding="utf-8",
    )
    init = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from bridge.cli import bridge_app; bridge_app()",
        "init",
        "--config",
        str(config_path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    said, _ = await asyncio.wait_for(init.communicate(), 60)
    assert init.returncode == 0 and b"Created the bridge database" in said, said
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from bridge.cli import bridge_app; bridge_app()",
        "run",
        "--config",
        str(config_path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        async with aiohttp.ClientSession() as http:
            health = f"http://127.0.0.1:{port}{OPENAPI_PREFIX}/health"
            for _ in range(300):  # deadline ~30 s: interpreter start and migrations
                if process.returncode is not None:
                    break
                try:
                    async with http.get(health) as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.1)
            else:
                pytest.fail("`bridge run` did not become healthy")
        assert process.returncode is None, "bridge exited early"
        assert (tmp_path / "data" / "bridge.db").exists()  # default database beside the config
        process.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(process.communicate(), 30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0
    text = output.decode()
    assert f"listening on http://127.0.0.1:{port}" in text
    assert "Bridge stopping" in text
    assert "Traceback" not in text
    assert SERVICE_TOKEN not in text


async def test_serve_never_creates_its_database(tmp_path: Path) -> None:
    """A lost SQLite file (failed mount, wrong path) stops the bridge; nothing is created."""
    config = bridge_config(tmp_path, listen_port=free_port())
    with pytest.raises(StartupError, match=r"no bridge database at .*bridge init") as info:
        await serve(config, asyncio.Event())
    assert "never creates its database" in str(info.value)
    assert not (config.data_dir / "bridge.db").exists()
    (config.data_dir).mkdir(parents=True)
    (config.data_dir / "bridge.db").touch()  # an empty file is no database either
    with pytest.raises(StartupError, match="no bridge database at"):
        await serve(config, asyncio.Event())


@pytest.mark.postgres
async def test_serve_refuses_an_empty_postgresql_database(tmp_path: Path) -> None:
    """A wrong database name that happens to exist, empty, is refused like a missing one."""
    from tests.bot_commands_support import fresh_postgres_database

    async for url in fresh_postgres_database():
        config = bridge_config(tmp_path, database_url=url, listen_port=free_port())
        with pytest.raises(StartupError, match=r"is empty; nothing was created: the bridge never"):
            await serve(config, asyncio.Event())
        await init_database(config)  # `caducee bridge init`: then it starts
        stop = asyncio.Event()
        task = asyncio.create_task(serve(config, stop))
        async with aiohttp.ClientSession() as http:
            health = f"http://127.0.0.1:{config.listen_port}{OPENAPI_PREFIX}/health"
            for _ in range(300):
                assert not task.done(), task
                try:
                    async with http.get(health) as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.1)
            else:
                pytest.fail("the initialised bridge did not become healthy")
        stop.set()
        await asyncio.wait_for(task, 15)
