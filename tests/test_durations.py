"""Durations as doctors type them, and the federation's bounds."""

from __future__ import annotations

import pytest

from bot.durations import DurationError, check_bounds, format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("15m", 900),
        ("24h", 86400),
        ("7d", 604800),
        ("4w", 2419200),
        (" 7D ", 604800),
        ("1d12h", 129600),
        ("1d 12h", 129600),
        ("90 m", 5400),
    ],
)
def test_parse_accepts_the_documented_forms(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "7", "d", "7x", "7 days", "-5m", "1.5h", "1dx2h", "ttl"])
def test_parse_refuses_anything_else_with_examples(text: str) -> None:
    with pytest.raises(DurationError, match=r"30s, 15m, 24h, 7d, 4w"):
        parse_duration(text)


def test_zero_and_absurd_durations_are_refused() -> None:
    with pytest.raises(DurationError, match="positive"):
        parse_duration("0s")
    with pytest.raises(DurationError, match="too long"):
        parse_duration("999999999w")


@pytest.mark.parametrize("seconds", [1, 59, 60, 3600, 90000, 604800, 1209600 + 3661])
def test_format_round_trips(seconds: int) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


def test_format_uses_largest_units() -> None:
    assert format_duration(90000) == "1d1h"
    assert format_duration(604800) == "1w"


def test_bounds_are_named_in_the_refusal() -> None:
    assert check_bounds(3600, 60, 86400) == 3600
    with pytest.raises(DurationError, match=r"\(1m to 1d\)") as excinfo:
        check_bounds(7 * 86400, 60, 86400)
    assert "1w" in str(excinfo.value)
    with pytest.raises(DurationError, match=r"1m à 1d"):
        check_bounds(30, 60, 86400)
