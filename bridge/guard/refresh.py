"""Keeping the allow-list live: poll the federation bridge, swap the list, survive outages.

With `allowed_servers_url` set, the guard asks the bridge every `refresh_seconds` for
`{"servers": [...], "version": ...}` and installs the answer with
`AllowListHolder.replace` (the homeserver's own name is always kept). A homeserver the
registry onboards or removes is thus let in or cut off within one interval, without
restarting Synapse. When the bridge cannot be reached, answers an error or something
that is not such a list, the last good list stays in force: an outage of the bridge
must not cut a hospital off, nor open it to anyone. Only a peer federation's servers have
an end: the bridge sends when each one's manifest expires (`expires`), and the guard drops
them at that moment even if the bridge stays unreachable, as the bridge itself would. The
static `allowed_servers` is the list in force until the first good answer (at start, or
while the bridge is down).

Only Synapse's public module API is used: `looping_background_call` (on every worker,
since each process runs its own guard) and `http_client.get_json`. A refresh that is
still waiting for the bridge when the next one is due is not doubled.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Final

from synapse.module_api import ModuleApi

from bridge.guard.allowlist import AllowListHolder, Answer, parse_answer

logger = logging.getLogger(__name__)

DEFAULT_REFRESH_SECONDS: Final = 30.0


class AllowListRefresher:
    """Polls the bridge and swaps the guard's allow-list."""

    def __init__(
        self,
        api: ModuleApi,
        holder: AllowListHolder,
        url: str,
        interval_seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._api = api
        self._holder = holder
        self._url = url
        self._interval = interval_seconds
        self._clock = clock
        self._last: Answer | None = None
        self._running = False
        self._failing = False
        self._held_back: str | None = None
        """Version of a list held back because it would cut off every member."""
        self.version: str | None = None
        """Version of the list in force (None: still the configured one)."""

    def start(self) -> None:
        """Refresh once now, then every interval (Synapse runs both in the background)."""
        self._api.delayed_background_call(0, self.refresh, desc="caducee_guard_allow_list")
        self._api.looping_background_call(
            self.refresh,
            self._interval * 1000,
            desc="caducee_guard_allow_list",
            run_on_all_instances=True,
        )

    async def refresh(self) -> None:
        if self._running:
            return
        self._running = True
        try:
            await self._refresh()
        finally:
            self._running = False

    async def _refresh(self) -> None:
        try:
            body = await self._api.http_client.get_json(self._url)
        except Exception as exc:  # network, HTTP status, timeout, not JSON: all the same here
            self._failed(f"cannot read it ({type(exc).__name__})")
            return
        answer = parse_answer(body)
        if answer is None:
            self._failed("the answer is not an allow-list")
            return
        current = self._holder.current
        if answer.cuts_off_every_member(current.servers, current.own_server):
            if self._held_back != answer.version:  # reported once per version
                self._held_back = answer.version
                logger.error(
                    "Allow-list version %s from the federation bridge would cut off every member "
                    "homeserver (%s) and its registry is empty: held back, the last good list "
                    "stays in force. Check the bridge's database and registry.",
                    answer.version,
                    ", ".join(sorted(set(current.servers) - {current.own_server})),
                )
            return
        if self._failing:
            logger.warning("Allow-list from the federation bridge readable again")
            self._failing = False
        self._last = answer
        servers = answer.servers - answer.lapsed(self._now_ms())
        if answer.version == self.version and servers | {self._holder.current.own_server} == set(
            self._holder.current.servers
        ):
            return
        installed = self._holder.replace(servers)
        self.version = answer.version
        logger.info(
            "Allow-list version %s from the federation bridge: %d server(s): %s",
            answer.version,
            len(installed.servers),
            sorted(installed.servers),
        )

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def _drop_lapsed(self) -> None:
        """While the bridge cannot say otherwise, a peer's servers go at their manifest's end."""
        if self._last is None:
            return
        current = self._holder.current
        lapsed = self._last.lapsed(self._now_ms()) & current.servers - {current.own_server}
        if lapsed:
            self._holder.replace(current.servers - lapsed)
            logger.warning(
                "Allow-list: the peer manifest listing %s expired while the federation bridge "
                "cannot be read; these servers are cut off until it answers again",
                sorted(lapsed),
            )

    def _failed(self, problem: str) -> None:
        self._drop_lapsed()
        if not self._failing:
            logger.warning(
                "Allow-list from the federation bridge: %s; keeping the last good list (%d "
                "server(s))",
                problem,
                len(self._holder.current.servers),
            )
        self._failing = True
