"""Which homeservers' users the bot serves: accepts invitations from, runs commands for, and
invites to cases.

With `follow_registry: false` it is the configuration's `member_servers` (a frozenset). With
`follow_registry: true` it is a `RegistryMemberServers`, which asks the bridge every
`registry_refresh_interval` for the list the homeservers' guards follow
(`GET /_caducee/v1/federation/allowed_servers`, public: no token is sent) and swaps it in, so a
homeserver onboarded or removed with `caducee admin` counts without restarting the bot. Like
the guards: the configured list is in force until the bridge first answers; when the bridge
cannot be reached, answers an error or something that is not such a list, the last good list
stays in force, except a peer federation's servers once the manifest listing them ends (the
bridge says when: `expires`); the bot's own homeserver is always a member.

Both are used as `Container[str]`: `server in member_servers`, read at each decision.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Container, Iterable, Mapping
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Final

import aiohttp

from bridge.guard.allowlist import parse_answer
from bridge.registry.model import ALLOWED_SERVERS_PATH

if TYPE_CHECKING:
    from bot.config import BotConfig

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT: Final = aiohttp.ClientTimeout(total=10, connect=3)


class RegistryMemberServers:
    """The member servers, following the federation registry through the bridge.

    `start()` polls in a background task (first ask at once); `aclose()` stops it. `refresh()`
    asks once (tests, or a caller that wants the list now).
    """

    def __init__(
        self,
        own_server: str,
        configured: Iterable[str],
        bridge_url: str,
        *,
        interval_seconds: float = 30.0,
        timeout: aiohttp.ClientTimeout = DEFAULT_TIMEOUT,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._own = own_server.lower()
        self._servers = frozenset(s.lower() for s in configured) | {self._own}
        self._ends: Mapping[str, int] = {}
        """Peer servers' manifest ends (ms) from the last answer: they lapse even while the
        bridge cannot be read."""
        self._clock = clock
        self._url = bridge_url.rstrip("/") + ALLOWED_SERVERS_PATH
        self._interval = interval_seconds
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._failing = False
        self._held_back: str | None = None
        """Version of a list held back because it would cut off every member."""
        self.version: str | None = None
        """Version of the bridge's list in force (None: still the configured list)."""

    def __contains__(self, server_name: object) -> bool:
        return isinstance(server_name, str) and server_name.lower() in self.servers

    @property
    def servers(self) -> frozenset[str]:
        """The member servers in force now (a peer's, until its manifest ends)."""
        now_ms = self._clock() * 1000
        lapsed = {s for s, end in self._ends.items() if end <= now_ms} - {self._own}
        return self._servers - lapsed if lapsed else self._servers

    async def refresh(self) -> bool:
        """Ask the bridge once; True when its answer is now in force."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        try:
            async with self._session.get(self._url) as response:
                if response.status != 200:
                    self._failed(f"HTTP {response.status}")
                    return False
                body = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            self._failed(f"cannot read it ({type(exc).__name__})")
            return False
        answer = parse_answer(body)
        if answer is None:
            self._failed("the answer is not a list of servers")
            return False
        if answer.cuts_off_every_member(self._servers, self._own):
            if self._held_back != answer.version:  # reported once per version
                self._held_back = answer.version
                logger.error(
                    "Member servers version %s from the federation bridge would cut off every "
                    "member homeserver (%s) and its registry is empty: held back, the last "
                    "good list stays in force. Check the bridge's database and registry.",
                    answer.version,
                    ", ".join(sorted(set(self._servers) - {self._own})),
                )
            return False
        if self._failing:
            logger.warning("Member servers from the federation bridge readable again")
            self._failing = False
        servers = answer.servers | {self._own}
        if answer.version != self.version or servers != self._servers:
            logger.info(
                "Member servers version %s from the federation bridge: %d server(s): %s",
                answer.version,
                len(servers),
                sorted(servers),
            )
        self._servers = servers
        self._ends = answer.expires
        self.version = answer.version
        return True

    def _failed(self, problem: str) -> None:
        if not self._failing:
            logger.warning(
                "Member servers from the federation bridge: %s; keeping the last good list "
                "(%d server(s))",
                problem,
                len(self._servers),
            )
        self._failing = True

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.refresh()
            except Exception:  # a bug must not stop the polling nor the bot
                logger.exception("Refreshing the member servers failed")

    def start(self) -> None:
        """Ask the bridge again every interval (`open_member_servers` asks it first)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="member servers refresh")

    async def aclose(self) -> None:
        """Stop polling and close the HTTP session (the last list stays readable)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._session is not None:
            await self._session.close()
            self._session = None


async def open_member_servers(config: BotConfig, stack: AsyncExitStack) -> Container[str]:
    """The bot's member servers for `config`; with `follow_registry`, the bridge is asked
    once before this returns (so the first sync, which replays what came while the bot was
    down, is judged by the registry, not by the configured list), then polled until `stack`
    closes."""
    if not config.follow_registry:
        return config.effective_member_servers
    assert config.bridge_url is not None  # checked by the configuration
    members = RegistryMemberServers(
        config.server_name,
        config.effective_member_servers,
        config.bridge_url,
        interval_seconds=config.registry_refresh_interval,
    )
    stack.push_async_callback(members.aclose)
    with contextlib.suppress(Exception):  # unreachable bridge: the configured list applies
        await members.refresh()
    members.start()
    return members
