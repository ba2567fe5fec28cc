"""Drives the Element-compatible test client (tests/element/client.mjs) from pytest.

Element's crypto is matrix-js-sdk's Rust crypto: the only honest way to know what a doctor's
Element does with the bot's messages is to run that code. The client is a long-lived Node
process speaking one JSON object per line; this module starts it, sends commands with
deadlines and turns its errors into exceptions carrying the client's stderr tail.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import shutil
from pathlib import Path
from typing import Any

ELEMENT_DIR = Path(__file__).parent / "element"
CLIENT_SCRIPT = ELEMENT_DIR / "client.mjs"
INSTALL_HINT = "run `npm ci --prefix tests/element` (part of `make install`)"

#: Seconds the driver waits beyond the client's own timeout before declaring it hung.
_GRACE_S = 15.0
_STDERR_TAIL = 60


class ElementClientError(RuntimeError):
    """A command failed in the client (``code`` is the client's error code)."""

    def __init__(self, cmd: str, code: str, message: str, stderr_tail: str) -> None:
        super().__init__(f"{cmd} failed: {code}: {message}\n--- client stderr ---\n{stderr_tail}")
        self.cmd = cmd
        self.code = code


def installation_problem() -> str | None:
    """Why the client cannot run here, or None when Node and its packages are installed."""
    if shutil.which("node") is None:
        return "node is not on PATH"
    if not (ELEMENT_DIR / "node_modules" / "matrix-js-sdk" / "package.json").is_file():
        return f"tests/element/node_modules is missing: {INSTALL_HINT}"
    return None


class ElementClient:
    """One Element-like device in its own Node process."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self._proc = proc
        self._next_id = 0
        self._stderr: collections.deque[str] = collections.deque(maxlen=_STDERR_TAIL)
        self._stderr_task = asyncio.create_task(self._drain_stderr())
        self.user_id: str | None = None
        self.device_id: str | None = None
        self.access_token: str | None = None  # when the session was given one (media)

    @classmethod
    async def start(cls, *, log_level: str = "warn") -> ElementClient:
        problem = installation_problem()
        if problem is not None:
            raise RuntimeError(problem)
        proc = await asyncio.create_subprocess_exec(
            "node",
            str(CLIENT_SCRIPT),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={"PATH": _node_path(), "ELEMENT_CLIENT_LOG": log_level},
            limit=4 * 1024 * 1024,
        )
        client = cls(proc)
        hello = await client._read_reply(timeout=30.0, cmd="start")
        if not hello.get("ok"):
            await client.close()
            raise ElementClientError("start", "START_FAILED", str(hello), client.stderr_tail())
        return client

    def stderr_tail(self) -> str:
        return "\n".join(self._stderr)

    async def _drain_stderr(self) -> None:
        assert self._proc.stderr is not None
        async for raw in self._proc.stderr:
            self._stderr.append(raw.decode("utf-8", "replace").rstrip())

    async def _read_reply(self, *, timeout: float, cmd: str) -> dict[str, Any]:
        assert self._proc.stdout is not None
        try:
            line = await asyncio.wait_for(self._proc.stdout.readline(), timeout)
        except TimeoutError:
            msg = f"no reply within {timeout:.0f} s"
            raise ElementClientError(cmd, "DRIVER_TIMEOUT", msg, self.stderr_tail()) from None
        if not line:
            await asyncio.sleep(0)  # let the stderr drain catch the last words
            msg = f"client exited (rc={self._proc.returncode})"
            raise ElementClientError(cmd, "CLIENT_EXITED", msg, self.stderr_tail())
        reply: dict[str, Any] = json.loads(line)
        return reply

    async def request(self, cmd: str, *, timeout_ms: int = 30_000, **args: Any) -> dict[str, Any]:
        """Sends one command and returns its result; raises ElementClientError on failure."""
        assert self._proc.stdin is not None
        self._next_id += 1
        req = {"id": self._next_id, "cmd": cmd, "timeout_ms": timeout_ms, **args}
        self._proc.stdin.write(json.dumps(req).encode() + b"\n")
        await self._proc.stdin.drain()
        reply = await self._read_reply(timeout=timeout_ms / 1000 + _GRACE_S, cmd=cmd)
        if reply.get("id") != self._next_id:
            raise ElementClientError(cmd, "PROTOCOL", f"reply out of order: {reply}", "")
        if not reply.get("ok"):
            code, error = str(reply.get("code")), str(reply.get("error"))
            raise ElementClientError(cmd, code, error, self.stderr_tail())
        result: dict[str, Any] = reply["result"]
        return result

    # Commands -------------------------------------------------------------------------------

    async def login(
        self,
        homeserver_url: str,
        user_id: str,
        password: str,
        *,
        access_token: str | None = None,
        device_id: str | None = None,
        isolation: str = "only_signed",
    ) -> dict[str, Any]:
        """Signs in (reusing a session when a token is given); keeps the password for UIA."""
        session: dict[str, Any] = {} if access_token is None else {"access_token": access_token}
        if device_id is not None:
            session["device_id"] = device_id
        result = await self.request(
            "login",
            homeserver_url=homeserver_url,
            user_id=user_id,
            password=password,
            isolation=isolation,
            **session,
        )
        self.user_id, self.device_id = result["user_id"], result["device_id"]
        self.access_token = access_token
        return result

    async def cross_sign(self) -> dict[str, Any]:
        return await self.request("cross_sign")

    async def status(self) -> dict[str, Any]:
        return await self.request("status")

    async def create_dm(self, user_id: str, *, wait_join: bool = True) -> str:
        result = await self.request("create_dm", user_id=user_id, wait_join=wait_join)
        room_id: str = result["room_id"]
        return room_id

    async def create_room(self, invite: list[str], *, wait_join: bool = True) -> str:
        result = await self.request("create_room", invite=invite, wait_join=wait_join)
        room_id: str = result["room_id"]
        return room_id

    async def wait_for_invite(self, *, sender: str | None = None) -> str:
        args: dict[str, Any] = {} if sender is None else {"from": sender}
        result = await self.request("wait_for_invite", **args)
        room_id: str = result["room_id"]
        return room_id

    async def join(self, room_id: str) -> dict[str, Any]:
        return await self.request("join", room_id=room_id)

    async def wait_for_join(self, room_id: str, user_id: str) -> None:
        await self.request("wait_for_join", room_id=room_id, user_id=user_id)

    async def send(self, room_id: str, body: str) -> str:
        result = await self.request("send", room_id=room_id, body=body)
        event_id: str = result["event_id"]
        return event_id

    async def wait_for_message(
        self,
        *,
        room_id: str | None = None,
        sender: str | None = None,
        timeout_ms: int = 30_000,
        utd_wait_ms: int = 10_000,
    ) -> dict[str, Any]:
        """The next message from others, once decrypted or finally refused (see client.mjs)."""
        filters = {k: v for k, v in {"room_id": room_id, "sender": sender}.items() if v}
        return await self.request(
            "wait_for_message", timeout_ms=timeout_ms, utd_wait_ms=utd_wait_ms, **filters
        )

    async def encryption_info(self, room_id: str, event_id: str) -> dict[str, Any]:
        return await self.request("encryption_info", room_id=room_id, event_id=event_id)

    async def withheld(self) -> dict[str, Any]:
        return await self.request("withheld")

    async def close(self) -> None:
        """Asks the client to stop, then makes sure the process is gone."""
        if self._proc.returncode is None:
            with contextlib.suppress(ElementClientError, OSError):
                await self.request("quit", timeout_ms=5_000)
            try:
                await asyncio.wait_for(self._proc.wait(), 5)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self._proc.kill()
        await self._proc.wait()
        self._stderr_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._stderr_task


def _node_path() -> str:
    node = shutil.which("node")
    assert node is not None
    return str(Path(node).parent) + ":/usr/bin:/bin"
