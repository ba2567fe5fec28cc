"""A managed subprocess: started in its own session, ready when its health URL answers,
stopped with SIGTERM then SIGKILL. Homeservers, bridges and bots of the local federation
(and the production topology's test) all run through it."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp


@dataclass
class ManagedProcess:
    """A long-running process with a log file and, usually, a health URL."""

    name: str
    command: list[str]
    log_path: Path
    health_url: str = ""
    cwd: Path | None = None
    extra_logs: tuple[Path, ...] = ()  # other logs worth showing when it fails
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def launch(self) -> None:
        """Start the process (returns at once; see `wait_ready`). Its own session, so a
        Ctrl-C in the launcher's terminal reaches the launcher only, which stops it cleanly."""
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command,
                cwd=self.cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    async def wait_ready(self, http: aiohttp.ClientSession, timeout: float = 60.0) -> None:
        """Wait until the health URL answers 200; fail with the logs' tail if it died."""
        deadline = time.monotonic() + timeout
        while True:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited ({self.process.returncode}):\n{self.log_tail()}"
                )
            try:
                async with http.get(self.health_url) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} not ready:\n{self.log_tail()}")
            await asyncio.sleep(0.1)

    def log_tail(self, lines: int = 30) -> str:
        text = ""
        for path in (self.log_path, *self.extra_logs):
            if path.exists():
                text += "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) + "\n"
        return text

    def terminate(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)

    def wait_stopped(self, timeout: float = 15.0) -> None:
        """Wait for a clean exit after `terminate`; kill the process group past `timeout`."""
        if self.process is None:
            return
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.process = None

    def stop(self, timeout: float = 15.0) -> None:
        self.terminate()
        self.wait_stopped(timeout)
