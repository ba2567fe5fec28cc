"""Sign-in limits: guesses are slowed and bounded, the real admin is never locked out for good.

Every attempt is counted when it starts, before the homeserver is asked, so parallel guesses
cannot all reach it before the first answer comes back. Three counters, each answering one
attack (the shape OWASP recommends against online guessing, with its "device cookie"):

- per address (`per_address`): one machine cannot try many accounts (a device cookie is
  bound to one account, so attempts with one are outside this count: addresses behind one
  proxy or NAT cannot hold the admin's browser back);
- per client and account (`per_client`): failures of one account from one client (its
  address, or the device cookie of an earlier successful sign-in) wait after `free`
  failures, doubling from `base_wait` up to `max_wait`; the count is forgotten `decay`
  seconds after the last failure, and a success clears it. A lockout is thus bounded and
  only ever hits the client that guessed: the admin, from another address or with their
  device cookie, is not held back by someone else's guesses;
- per account, across clients without a device cookie (`per_account`): many machines
  cannot share out guesses at one account faster than `limit` per `window` (5 per 15 min:
  about 480 a day, whatever the number of addresses). They can use that budget up, which
  keeps a new browser waiting (at most one window per try); a browser the admin signed in
  with before (device cookie) is outside this budget and goes straight through.

Pure (a clock is injected) and in memory: the limits hold per bridge process, which is what
one bridge behind a proxy runs. Tables are bounded so a flood of addresses cannot grow them.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

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

    def refund(self, key: str) -> None:
        """Take back the latest event of `key` (it turned out not to count)."""
        events = self._recent(key)
        if events:
            events.pop()
        if not events:
            self._events.pop(key, None)

    def clear(self, key: str) -> None:
        self._events.pop(key, None)


@dataclass
class Backoff:
    """Failures per key: `free` of them cost nothing, each further one doubles the wait
    (from `base_wait`, at most `max_wait`); forgotten `decay` seconds after the last one."""

    free: int = 5
    base_wait: float = 30.0
    max_wait: float = 900.0
    decay: float = 3600.0
    clock: Callable[[], float] = time.monotonic
    _failures: OrderedDict[str, tuple[int, float]] = field(default_factory=OrderedDict)

    def count(self, key: str) -> int:
        found = self._failures.get(key)
        if found is None:
            return 0
        if self.clock() - found[1] >= self.decay:
            del self._failures[key]
            return 0
        return found[0]

    def wait(self, failures: int) -> float:
        """The wait after `failures` failures (0 while they are free)."""
        if failures < self.free:
            return 0.0
        return min(self.max_wait, self.base_wait * 2.0 ** (failures - self.free))

    def blocked_for(self, key: str) -> float:
        failures = self.count(key)
        if not failures:
            return 0.0
        return max(0.0, self._failures[key][1] + self.wait(failures) - self.clock())

    def hit(self, key: str) -> None:
        self._failures[key] = (self.count(key) + 1, self.clock())
        self._failures.move_to_end(key)
        while len(self._failures) > MAX_KEYS:
            self._failures.popitem(last=False)

    def refund(self, key: str) -> None:
        """Take back one counted failure (the homeserver gave no verdict)."""
        failures = self.count(key)
        if failures > 1:
            self._failures[key] = (failures - 1, self._failures[key][1])
        elif failures:
            del self._failures[key]

    def clear(self, key: str) -> None:
        self._failures.pop(key, None)


Outcome = Literal["ok", "refused", "no_verdict"]


@dataclass(frozen=True, slots=True)
class Attempt:
    """A sign-in under way, counted already; `SignInLimiter.finished` settles it."""

    address: str
    account: str
    client: str
    trusted: bool


@dataclass
class SignInLimiter:
    """See the module's docstring. `start` an attempt before asking the homeserver (None:
    wait `wait_needed` seconds first), then tell `finished` how it went."""

    per_address: SlidingWindow = field(default_factory=lambda: SlidingWindow(20, 300.0))
    per_client: Backoff = field(default_factory=Backoff)
    per_account: SlidingWindow = field(default_factory=lambda: SlidingWindow(5, 900.0))

    @staticmethod
    def client_key(account: str, address: str, device: str | None) -> str:
        return f"{account}\x00{'device:' + device if device else 'address:' + address}"

    def wait_needed(self, address: str, account: str, device: str | None = None) -> float:
        own = self.per_client.blocked_for(self.client_key(account, address, device))
        if device is not None:  # bound to this one account: only its own failures count
            return own
        return max(
            own, self.per_address.blocked_for(address), self.per_account.blocked_for(account)
        )

    def start(self, address: str, account: str, device: str | None = None) -> Attempt | None:
        """Count the attempt now (as a failure until it is known to be one or not)."""
        if self.wait_needed(address, account, device) > 0:
            return None
        attempt = Attempt(address, account, self.client_key(account, address, device), bool(device))
        self.per_client.hit(attempt.client)
        if not attempt.trusted:
            self.per_address.hit(address)
            self.per_account.hit(account)
        return attempt

    def finished(self, attempt: Attempt, outcome: Outcome) -> None:
        """Settle a started attempt: only refused passwords stay counted."""
        if outcome == "refused":
            return
        if not attempt.trusted:
            self.per_account.refund(attempt.account)
        if outcome == "ok":
            self.per_client.clear(attempt.client)
            self.per_client.clear(self.client_key(attempt.account, attempt.address, None))
        else:
            self.per_client.refund(attempt.client)
