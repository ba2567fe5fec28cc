"""Message lifetimes as doctors type them: ``30s``, ``15m``, ``24h``, ``7d``, ``4w``.

Pure functions shared by ``!case new ... ttl=`` and ``!expire``. Bounds are the
federation's (``CommandSettings``), checked here so every command words them the same way.
"""

from __future__ import annotations

import re

UNIT_SECONDS: dict[str, int] = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}

_DURATION = re.compile(r"(\d{1,9})\s*([smhdw])")

# Nothing in Matrix needs more than ~100 years; a cap keeps ints sane in milliseconds.
_MAX_SECONDS = 100 * 365 * 86400


class DurationError(ValueError):
    """The text is not a duration, or is outside the allowed bounds (message is user-facing)."""


def parse_duration(text: str) -> int:
    """Seconds in ``text``: a number and a unit (s, m, h, d, w), or several (``1d12h``).

    Case and surrounding spaces do not matter. Zero is refused: a lifetime of nothing would
    erase messages as they arrive.

    Raises:
        DurationError: with a message that shows the accepted forms.
    """
    cleaned = text.strip().lower()
    pos = 0
    total = 0
    for match in _DURATION.finditer(cleaned):
        if match.start() != pos and cleaned[pos : match.start()].strip():
            break
        total += int(match.group(1)) * UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if not cleaned or pos == 0 or cleaned[pos:].strip():
        raise DurationError(
            f"« {text} » n'est pas une durée (exemples : 30s, 15m, 24h, 7d, 4w) / "
            f"“{text}” is not a duration (examples: 30s, 15m, 24h, 7d, 4w)"
        )
    if total <= 0:
        raise DurationError("Une durée doit être positive. / A duration must be positive.")
    if total > _MAX_SECONDS:
        raise DurationError("Durée trop longue. / Duration too long.")
    return total


def format_duration(seconds: int) -> str:
    """The shortest exact spelling of ``seconds`` in the largest units (``90000`` → ``1d1h``)."""
    if seconds <= 0:
        return "0s"
    parts: list[str] = []
    remaining = seconds
    for unit in ("w", "d", "h", "m", "s"):
        size = UNIT_SECONDS[unit]
        count, remaining = divmod(remaining, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def check_bounds(seconds: int, min_seconds: int, max_seconds: int) -> int:
    """Return ``seconds`` if within [min, max], else raise a DurationError naming the bounds."""
    if not min_seconds <= seconds <= max_seconds:
        lo, hi, got = (
            format_duration(min_seconds),
            format_duration(max_seconds),
            format_duration(seconds),
        )
        raise DurationError(
            f"Durée {got} hors des limites de la fédération ({lo} à {hi}). / "
            f"Lifetime {got} is outside the federation's bounds ({lo} to {hi})."
        )
    return seconds
