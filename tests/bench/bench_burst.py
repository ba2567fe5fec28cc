"""Benchmark: bursts from the doctors' side, on production rate limits (not part of `make test`).

The production topology of `bench scale` (tests/bench/scale_build.py: Synapse main + generic
worker + federation sender on PostgreSQL and Redis, production rate limits for people, the
bot exempted by the deployment's own `caducee deploy bot-account` step), with only the
accounts the bursts need, no other rooms:

- `--dms` practitioners open a DM with the bot in the same moment (the echo bot, a bare nio
  client exempted the same way, is invited too: the same-run baseline). Target: every one
  joined by the bot within 60 s.
- `--finds` doctors (E2EE, cross-signed, keys already exchanged) send `!find` in the same
  second; the same doctors then do the same to the echo bot. Target: every one answered
  within 5 s.

    python -m tests.bench burst                 # the issue's size: 300 DMs, 20 !find
    python -m tests.bench burst --dms 30 --finds 5
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path
from typing import Any

from tests.bench.bench_scale import (
    BotProcess,
    doctors_with_dms,
    echo_bot,
    load,
    measure_bursts,
    report_bursts,
)
from tests.bench.scale_build import build, scale_setup


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    r: dict[str, Any] = {}
    async with scale_setup(f"burst-n{args.burst_dms}", rebuild=args.rebuild) as scale:
        bot = BotProcess(scale)
        echo = await echo_bot(scale)
        echo_id = str(echo.client.user_id)
        doctors = []
        try:
            await bot.start()
            await build(scale, args.burst_dms, 0, echo_id)
            with tempfile.TemporaryDirectory(prefix="caducee-bench-burst-") as tmp:
                doctors, rooms, echo_rooms = await doctors_with_dms(
                    scale, Path(tmp), args.burst_finds, echo_id
                )
                await measure_bursts(args, scale, echo_id, doctors, rooms, echo_rooms, r)
        finally:
            for d in doctors:
                await d.close()
            await echo.stop()
            await bot.stop()
    return r


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.bench burst")
    parser.add_argument("--dms", dest="burst_dms", type=int, default=300)
    parser.add_argument("--finds", dest="burst_finds", type=int, default=20)
    parser.add_argument("--rebuild", action="store_true")
    args = parser.parse_args(argv)
    print(f"load at start: {load()}", flush=True)
    results = asyncio.run(measure(args))
    report_bursts(args, results)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
