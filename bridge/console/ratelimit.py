"""Sign-in rate limiting: a few attempts per address and per account, then wait.

Per address, so one machine cannot try many accounts; per account, so many machines cannot
try one account's password. Pure (a clock is injected) and in memory: the limits hold per
bridge process, which is what one bridge behind a proxy runs. Entries expire with their window,
and the table is bounded so that a flood of addresses cannot grow it without end.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

MAX_KEYS = 10_000


@dataclass
class SlidingWindow:
    """At most `limit` events per `window` seconds for each key."""

    limit: int
    window: float
    clock: Callable[[], float] = time.monotonic
    _events: OrderedDict[str, deque[float]] = field(default_factory=OrderedDict)

    def _recent(self, key: str) -> deque[float]:
        now = self.clock()
        events = self._events.get(key)
        if events is None:
            return deque()
        while events and events[0] <= now - self.window:
            events.popleft()
        if not events:
            del self._events[key]
        return events

    def blocked_for(self, key: str) -> float:
        """Seconds until `key` may try again (0 if it may now)."""
        events = self._recent(key)
        if len(events) < self.limit:
            return 0.0
        return max(0.0, events[0] + self.window - self.clock())

    def hit(self, key: str) -> None:
        events = self._recent(key)
        events.append(self.clock())
        self._events[key] = events
        self._events.move_to_end(key)
        while len(self._events) > MAX_KEYS:
            self._events.popitem(last=False)

    def clear(self, key: str) -> None:
        self._events.pop(key, None)


@dataclass
class SignInLimiter:
    """Attempts per client address, failures per account."""

    per_address: SlidingWindow = field(default_factory=lambda: SlidingWindow(20, 300.0))
    per_account: SlidingWindow = field(default_factory=lambda: SlidingWindow(5, 900.0))

    def wait_needed(self, address: str, account: str) -> float:
        return max(self.per_address.blocked_for(address), self.per_account.blocked_for(account))

    def attempted(self, address: str) -> None:
        self.per_address.hit(address)

    def failed(self, account: str) -> None:
        self.per_account.hit(account)

    def succeeded(self, account: str) -> None:
        self.per_account.clear(account)
