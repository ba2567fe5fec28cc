"""Sign-in limits with a controlled clock: attempts count before the answer, lockouts are
bounded and back off, they decay, and only the guessing client is held back."""

from __future__ import annotations

import pytest

from bridge.console import device
from bridge.console.ratelimit import MAX_KEYS, Backoff, SignInLimiter, SlidingWindow


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def limiter(clock: Clock) -> SignInLimiter:
    defaults = SignInLimiter()
    return SignInLimiter(
        SlidingWindow(defaults.per_address.limit, defaults.per_address.window, clock),
        Backoff(clock=clock),
        SlidingWindow(defaults.per_account.limit, defaults.per_account.window, clock),
    )


ADMIN = "@root:clinic.test"


def test_window_blocks_past_the_limit_then_slides() -> None:
    clock = Clock()
    window = SlidingWindow(3, 60.0, clock)
    for _ in range(3):
        assert window.blocked_for("ip") == 0
        window.hit("ip")
        clock.now += 1
    assert window.blocked_for("ip") == 57.0
    assert window.blocked_for("other") == 0
    clock.now += 57
    assert window.blocked_for("ip") == 0


def test_parallel_attempts_are_counted_before_any_answer() -> None:
    """Twenty guesses at once from one machine: five start, the others wait (no answer yet)."""
    limits = limiter(Clock())
    started = [limits.start("1.2.3.4", ADMIN) for _ in range(20)]
    assert sum(a is not None for a in started) == 5


@pytest.mark.parametrize("device", [None, "dev-1"], ids=["address", "device-cookie"])
def test_the_lockout_backs_off_is_bounded_and_decays(device: str | None) -> None:
    clock = Clock()
    limits = limiter(clock)
    key = SignInLimiter.client_key(ADMIN, "1.2.3.4", device)
    waits, told = [], []
    for _ in range(10):
        attempt = limits.start("1.2.3.4", ADMIN, device)
        assert attempt is not None
        limits.finished(attempt, "refused")
        waits.append(limits.per_client.blocked_for(key))
        told.append(limits.wait_needed("1.2.3.4", ADMIN, device))
        clock.now += told[-1]  # the guesser waits exactly as long as told
    assert waits[:4] == [0, 0, 0, 0]
    assert waits[4:] == [30, 60, 120, 240, 480, 900]  # doubling, never above 15 minutes
    # Without a device cookie the account's shared budget (5 per 15 min) may add to it;
    # never beyond 15 minutes a try.
    assert max(told) <= max(limits.per_client.max_wait, limits.per_account.window)
    # An hour without failures and the count is forgotten.
    clock.now += limits.per_client.decay
    assert limits.per_client.count(key) == 0


def test_guesses_from_elsewhere_do_not_lock_the_admin_s_browser_out() -> None:
    clock = Clock()
    limits = limiter(clock)
    for _ in range(5):
        attempt = limits.start("6.6.6.6", ADMIN)
        assert attempt is not None
        limits.finished(attempt, "refused")
    assert limits.start("6.6.6.6", ADMIN) is None
    assert limits.wait_needed("10.0.0.2", ADMIN, device="dev-1") == 0
    # A new browser waits out the account's shared budget: at most one window per try.
    assert 0 < limits.wait_needed("10.0.0.2", ADMIN) <= limits.per_account.window
    clock.now += limits.per_account.window
    assert limits.wait_needed("10.0.0.2", ADMIN) == 0


def test_a_botnet_uses_up_the_shared_budget_but_not_a_known_browser() -> None:
    clock = Clock()
    limits = limiter(clock)
    for n in range(limits.per_account.limit):
        attempt = limits.start(f"6.6.6.{n}", ADMIN)
        assert attempt is not None
        limits.finished(attempt, "refused")
    assert limits.start("6.6.6.99", ADMIN) is None  # five per 15 minutes, all addresses
    assert limits.start("10.0.0.2", ADMIN) is None  # a new browser waits at most the window
    assert limits.wait_needed("10.0.0.2", ADMIN) <= limits.per_account.window
    # The admin's browser, known from an earlier sign-in, goes straight through, even from
    # an address the botnet shares (a proxy, a NAT) and even after that address's limit.
    for n in range(20):
        limits.start("6.6.6.0", f"@other{n}:clinic.test")
    assert limits.start("6.6.6.0", ADMIN, device="dev-1") is not None


def test_success_clears_the_client_and_no_verdict_is_refunded() -> None:
    clock = Clock()
    limits = limiter(clock)
    for _ in range(4):
        attempt = limits.start("1.2.3.4", ADMIN)
        assert attempt is not None
        limits.finished(attempt, "refused")
    key = SignInLimiter.client_key(ADMIN, "1.2.3.4", None)
    attempt = limits.start("1.2.3.4", ADMIN)
    assert attempt is not None
    limits.finished(attempt, "no_verdict")  # the homeserver was down: not a guess
    assert limits.per_client.count(key) == 4
    attempt = limits.start("1.2.3.4", ADMIN)
    assert attempt is not None
    limits.finished(attempt, "ok")
    assert limits.per_client.count(key) == 0
    # Only the four refused passwords used up the account's shared budget.
    assert limits.per_account.blocked_for(ADMIN) == 0
    assert len(limits.per_account._events[ADMIN]) == 4


@pytest.mark.parametrize("window", ["sliding", "backoff"])
def test_the_tables_stay_bounded(window: str) -> None:
    table: SlidingWindow | Backoff = (
        SlidingWindow(1, 60.0, Clock()) if window == "sliding" else Backoff(clock=Clock())
    )
    for n in range(MAX_KEYS + 50):
        table.hit(f"10.0.{n}")
    held = table._events if isinstance(table, SlidingWindow) else table._failures
    assert len(held) == MAX_KEYS


def test_a_device_cookie_is_bound_to_its_account_and_key() -> None:
    key = device.device_key(b"k" * 32)
    cookie = device.issue(key, ADMIN)
    known = device.device_of(key, ADMIN, cookie)
    assert known is not None and cookie.startswith(known + ".")
    assert device.device_of(key, "@other:clinic.test", cookie) is None
    assert device.device_of(device.device_key(b"x" * 32), ADMIN, cookie) is None
    forged = known + "." + "0" * 32
    for bad in (None, "", forged, cookie + "0", "." + cookie.split(".")[1], "x" * 500):
        assert device.device_of(key, ADMIN, bad) is None
