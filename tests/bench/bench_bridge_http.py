"""Benchmark: what the bridge's HTTP layer adds to a directory search.

The same fixed mix of realistic queries (the directory benchmark's: names, prefixes,
specialty + place, RPPS numbers) runs against one imported SQLite directory, each query both
ways in turn (alternating which goes first, so both see the same machine load):
- baseline: `search_directory` called in-process on one session (what the route calls);
- ours: `GET /_caducee/v1/directory/search` on a real listener started by `serve()` (metrics,
  error and auth middlewares, service-token check, parameter validation, a session per
  request, JSON), through one keep-alive aiohttp client, as the bot does.

Figures: p50/p95/p99 of each, the ratio ours/baseline at p50 and p95, and the added time per
request at p50. The extract is generated once and cached (CADUCEE_BENCH_CACHE).

Run: ``python -m tests.bench bridge_http [--lines N] [--queries N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import tempfile
import time
from pathlib import Path

import aiohttp

from bridge.config import parse_config
from bridge.db import open_database
from bridge.directory.importer import import_directory
from bridge.directory.search import search_directory
from bridge.http.directory_routes import SEARCH_PATH
from bridge.http.server import serve
from tests.bench.bench_directory import extract
from tests.bench.bench_directory_search import percentiles, query_mix

TOKEN = "bench-" + "b" * 40


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def measure(
    database: Path, folder: Path, queries: list[str]
) -> tuple[list[float], list[float]]:
    """(baseline, HTTP) timings in ms, interleaved query by query so both see the same load."""
    port = free_port()
    config = parse_config(
        {
            "server_name": "bench.test",
            "homeserver_url": "http://127.0.0.1:9",
            "database_url": f"sqlite+aiosqlite:///{database}",
            "listen_port": port,
            "service_tokens": [{"name": "bench", "token": TOKEN}],
        },
        base_dir=folder,
    )
    stop = asyncio.Event()
    server = asyncio.create_task(serve(config, stop))
    url = f"http://127.0.0.1:{port}{SEARCH_PATH}"
    headers = {"Authorization": f"Bearer {TOKEN}"}
    db = await open_database(f"sqlite:///{database}", create=True)
    base: list[float] = []
    ours: list[float] = []
    try:
        async with aiohttp.ClientSession() as http, db.sessions() as session:
            deadline = time.monotonic() + 30
            while True:  # until the listener answers
                try:
                    async with http.get(url.replace(SEARCH_PATH, "/_caducee/v1/health")) as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    if time.monotonic() > deadline or server.done():
                        raise
                    await asyncio.sleep(0.05)
            for measured in (False, True):  # a warm-up round, then the measured one
                for index, query in enumerate(queries):
                    for side in (index % 2, 1 - index % 2):  # alternate which side goes first
                        started = time.perf_counter()
                        if side == 0:
                            await search_directory(session, query, limit=10)
                        else:
                            async with http.get(url, params={"q": query}, headers=headers) as rsp:
                                assert rsp.status == 200, await rsp.text()
                                await rsp.read()
                        elapsed = (time.perf_counter() - started) * 1000
                        if measured:
                            (base if side == 0 else ours).append(elapsed)
    finally:
        await db.close()
        stop.set()
        await server
    return base, ours


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench bridge_http", description=__doc__)
    parser.add_argument("--lines", type=int, default=200_000, help="register lines to import")
    parser.add_argument("--queries", type=int, default=1000, help="queries in the mix")
    args = parser.parse_args(argv)

    source = extract(args.lines)
    with tempfile.TemporaryDirectory(prefix="caducee-bench-http-") as tmp:
        folder = Path(tmp)
        database = folder / "bridge.db"

        async def load() -> None:
            db = await open_database(f"sqlite:///{database}", create=True)
            try:
                await import_directory(db, source)
            finally:
                await db.close()

        started = time.perf_counter()
        asyncio.run(load())
        print(f"imported {args.lines:,} lines in {time.perf_counter() - started:.1f} s")
        queries = [query for _, query in query_mix(database, args.queries, seed=1)]
        base, ours = asyncio.run(measure(database, folder, queries))

    b, o = percentiles(base), percentiles(ours)
    print(f"queries: {len(queries)} (measured after one warm-up round each)")
    print("in-process search_directory (baseline): " + _fmt(b))
    print("GET /_caducee/v1/directory/search:      " + _fmt(o))
    print(
        f"ratio HTTP/baseline: p50 {o['p50'] / b['p50']:.2f}x, p95 {o['p95'] / b['p95']:.2f}x; "
        f"added per request at p50: {o['p50'] - b['p50']:.2f} ms"
    )


def _fmt(values: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.2f} ms" for k, v in values.items())
