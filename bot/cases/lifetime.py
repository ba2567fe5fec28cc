"""What members see of a case room's message lifetime. Pure functions, no I/O.

The topic is unencrypted room state: it says how long messages live and how to keep a
copy, nothing about the patient (the guard scans it like every topic).
"""

from __future__ import annotations

from bot.durations import format_duration

WARN_BEFORE_SECONDS = 3600
"""The warning comes this long before the first messages start disappearing."""
SHORT_LIFETIME_SECONDS = 86400
"""Rooms whose messages live less than this get the warning."""


def lifetime_topic(ttl_seconds: int) -> str:
    """The case room's topic for a given message lifetime (French, then English)."""
    lifetime = format_duration(ttl_seconds)
    return (
        f"Messages effacés {lifetime} après leur envoi ; pour en garder une copie : "
        f"!case export. / Messages are erased {lifetime} after they are sent; to keep a "
        "copy: !case export."
    )


def warning_due_ms(created_ms: int, ttl_seconds: int) -> int | None:
    """When the room gets its 'messages will disappear' notice; None if it gets none.

    The first messages can disappear ``ttl`` after the room opened; the notice comes an hour
    before that, or right away when the lifetime is an hour or less.
    """
    if ttl_seconds >= SHORT_LIFETIME_SECONDS:
        return None
    return created_ms + max(0, ttl_seconds - WARN_BEFORE_SECONDS) * 1000


def warning_text(ttl_seconds: int, created_ms: int, now_ms: int) -> str:
    """The notice itself: when the first messages go, and how to export before that."""
    first_gone_ms = created_ms + ttl_seconds * 1000
    left = format_duration(max(1, round((first_gone_ms - now_ms) / 1000)))
    lifetime = format_duration(ttl_seconds)
    if first_gone_ms <= now_ms:
        when_fr, when_en = "dès maintenant", "from now on"
    else:
        when_fr, when_en = f"dans {left}", f"in {left}"
    return (
        f"Les messages de cette salle sont effacés {lifetime} après leur envoi : les premiers "
        f"disparaissent {when_fr}. Pour verser le dossier au dossier patient, le créateur du "
        "dossier ou un administrateur tape !case export (copie chiffrée envoyée en message "
        f"privé). / Messages in this room are erased {lifetime} after they are sent: the first "
        f"ones disappear {when_en}. To file the case in the patient record, its creator or a "
        "room admin types !case export (an encrypted copy is sent by direct message)."
    )


def close_confirmation_text() -> str:
    """Asked at ``!case close`` when the case was never exported."""
    return (
        "Ce dossier n'a jamais été exporté : une fois clos, tout son contenu est effacé. "
        "Exportez-le d'abord (!case export), ou confirmez la clôture : !case close confirm. / "
        "This case was never exported: once closed, everything in it is erased. Export it "
        "first (!case export), or confirm closing it: !case close confirm."
    )
