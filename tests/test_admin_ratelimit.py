"""Sign-in limits with a controlled clock: windows slide, success clears an account's count."""

from __future__ import annotations

from bridge.console.ratelimit import MAX_KEYS, SignInLimiter, SlidingWindow


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


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


def test_success_clears_the_account_but_not_the_address() -> None:
    clock = Clock()
    limiter = SignInLimiter(SlidingWindow(10, 300, clock), SlidingWindow(2, 900, clock))
    for _ in range(2):
        limiter.attempted("1.2.3.4")
        limiter.failed("@a:x")
    assert limiter.wait_needed("5.6.7.8", "@a:x") > 0  # another machine, same account
    limiter.succeeded("@a:x")
    assert limiter.wait_needed("5.6.7.8", "@a:x") == 0


def test_the_table_stays_bounded() -> None:
    window = SlidingWindow(1, 60.0, Clock())
    for n in range(MAX_KEYS + 50):
        window.hit(f"10.0.{n}")
    assert len(window._events) == MAX_KEYS
