"""After its homeserver was unreachable for a while, the bot answers within 10 s of its return.

The bot reaches hs_a through a TCP relay that the test takes down (connections cut, then
refused: what the bot sees of a homeserver restart or a network outage) and brings back.
nio retries a failed request with a growing pause (60 s at most by default): after ten
failures it would sleep 51 s. The bot caps that pause, so a doctor's command sent when the
homeserver is back is answered within seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from deploy.local.federation import Homeserver
from tests.conftest_bot import bot_config, start_bot
from tests.matrix_helpers import Doctor

pytestmark = pytest.mark.slow

FAILED_ATTEMPTS = 10
"""Enough failures in a row for nio's uncapped pause to exceed the 10 s promise."""


class Relay:
    """A TCP relay to a homeserver's client port that can go down and come back."""

    def __init__(self, target_url: str) -> None:
        target = urlsplit(target_url)
        assert target.hostname is not None and target.port is not None
        self._target = (target.hostname, target.port)
        self._server: asyncio.Server | None = None
        self._port = 0
        self._pipes: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    async def up(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self._port)
        self._port = self._server.sockets[0].getsockname()[1]

    async def down(self) -> None:
        """Refuse new connections and cut the open ones."""
        assert self._server is not None
        self._server.close()
        for pipe in list(self._pipes):
            pipe.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)
        await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.close()
            return
        pipes = [
            asyncio.create_task(self._pipe(reader, up_writer)),
            asyncio.create_task(self._pipe(up_reader, writer)),
        ]
        self._pipes.update(pipes)
        try:
            await asyncio.gather(*pipes, return_exceptions=True)
        finally:
            self._pipes.difference_update(pipes)
            for w in (writer, up_writer):
                w.close()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()


class FailedAttempts(logging.Handler):
    """Sets `enough` once nio has logged `FAILED_ATTEMPTS` failed attempts."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0
        self.enough = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("Timed out, sleeping"):
            self.count += 1
            if self.count >= FAILED_ATTEMPTS:
                self.enough.set()


async def test_the_bot_answers_within_10_s_of_the_homeservers_return(
    hs_a: Homeserver, hs_b: Homeserver, tmp_path: Path
) -> None:
    relay = Relay(hs_a.client_url)
    await relay.up()
    config = await bot_config(
        hs_a,
        tmp_path / "bot",
        [hs_a.server_name, hs_b.server_name],
        homeserver_url=relay.url,
    )
    bot = await start_bot(config)
    doctor = await Doctor.create(hs_b, tmp_path)
    failures = FailedAttempts()
    nio_logger = logging.getLogger("nio")
    nio_logger.addHandler(failures)
    try:
        room_id = await doctor.dm(bot.user_id)
        await doctor.send(room_id, "!help")
        await doctor.wait_for_text(bot.user_id, lambda b: "!find" in b)

        await relay.down()
        await asyncio.wait_for(failures.enough.wait(), timeout=120)
        await relay.up()  # the homeserver is back
        back = time.monotonic()
        mark = len(doctor.seen)
        await doctor.send(room_id, "!help")
        await doctor.wait_for_text(bot.user_id, lambda b: "!find" in b, after=mark, timeout=10)
        assert time.monotonic() - back <= 10
    finally:
        nio_logger.removeHandler(failures)
        await doctor.close()
        await bot.stop()
        with contextlib.suppress(AssertionError):
            await relay.down()
