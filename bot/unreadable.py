"""Telling a doctor, in plain words, why the bot could not read their message.

Pure parts: the wording (French and English in one notice), the reading of an
``m.room_key.withheld`` to-device event (nio does not parse it), and the rate limit that keeps
a client which withholds every key from making the bot answer every message.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

WITHHELD_TYPE = "m.room_key.withheld"

NO_KEY = "no-key"
"""Our own code for "the key never arrived" (not a withheld code)."""

_MESSAGES: dict[str, tuple[str, str]] = {
    "m.unverified": (
        "Je n'ai pas pu lire votre message : votre application a refusé de me transmettre la "
        "clé de chiffrement parce qu'elle ne considère pas ma session comme vérifiée. Dans "
        "Element, ouvrez les paramètres « Sécurité et confidentialité » : vérifiez que votre "
        "propre session est vérifiée (avec une autre session ou votre clé de sécurité) ; si "
        "l'option « N'envoyer des messages chiffrés qu'aux sessions vérifiées » est activée, "
        "rechargez la liste des sessions du bot ou désactivez-la, puis renvoyez votre message.",
        "I could not read your message: your app refused to give me its encryption key "
        "because it does not consider my session verified. In Element, open Settings → "
        "Security & Privacy: make sure your own session is verified (from another session or "
        'with your security key); if "Only send encrypted messages to verified sessions" is '
        "on, refresh the bot's sessions or turn it off, then send your message again.",
    ),
    "m.blacklisted": (
        "Je n'ai pas pu lire votre message : votre application a bloqué ma session. "
        "Débloquez la session du bot dans la liste des sessions, puis renvoyez votre message.",
        "I could not read your message: your app has blocked my session. Unblock the bot's "
        "session in its session list, then send your message again.",
    ),
    "m.unauthorised": (
        "Je n'ai pas pu lire votre message : votre application estime que je ne suis pas "
        "autorisé à lire ce message. Renvoyez-le ; si cela se reproduit, signalez-le à votre "
        "administrateur.",
        "I could not read your message: your app considers that I am not allowed to read it. "
        "Send it again; if this keeps happening, tell your administrator.",
    ),
    "m.unavailable": (
        "Je n'ai pas pu lire votre message : la clé de chiffrement n'était plus disponible. "
        "Renvoyez votre message.",
        "I could not read your message: its encryption key was no longer available. Send "
        "your message again.",
    ),
    "m.no_olm": (
        "Je n'ai pas pu lire votre message : votre application n'a pas pu établir de canal "
        "sécurisé avec moi. Attendez une minute et renvoyez votre message.",
        "I could not read your message: your app could not set up a secure channel with me. "
        "Wait a minute and send your message again.",
    ),
    NO_KEY: (
        "Je n'ai pas pu lire votre message : la clé de chiffrement ne m'est pas parvenue. "
        "Le plus souvent, votre session n'est pas vérifiée (signée par votre compte) : dans "
        "Element, vérifiez cette session depuis une autre de vos sessions ou avec votre clé "
        "de sécurité, puis renvoyez votre message.",
        "I could not read your message: its encryption key never reached me. Most often your "
        "session is not verified (cross-signed by your account): in Element, verify this "
        "session from another of your sessions or with your security key, then send your "
        "message again.",
    ),
}
_GENERIC = (
    "Je n'ai pas pu lire votre message : votre application ne m'a pas transmis la clé de "
    "chiffrement. Renvoyez votre message ; si cela se reproduit, vérifiez votre session dans "
    "les paramètres de sécurité d'Element.",
    "I could not read your message: your app did not give me its encryption key. Send it "
    "again; if this keeps happening, verify your session in Element's security settings.",
)

SPEC_CODES = frozenset(
    {"m.blacklisted", "m.unverified", "m.unauthorised", "m.unavailable", "m.no_olm"}
)
"""The withheld codes the Matrix spec defines; any other code gets the generic text."""


def unreadable_notice(code: str) -> str:
    """The notice for a withheld code (``m.unverified``...) or `NO_KEY`, French then English.

    Only fixed texts are ever sent: a code the spec does not define (whatever its prefix) gets
    the generic notice and is never quoted, so a sender cannot make the bot say its words.
    """
    french, english = _MESSAGES.get(code, _GENERIC)
    return f"🔒 {french}\n\n{english}"


@dataclass(frozen=True)
class Withheld:
    """An ``m.room_key.withheld`` notice: the sender's app refused us the key of a session."""

    sender: str
    room_id: str
    session_id: str
    code: str
    sender_key: str | None = None
    """The Curve25519 key of the session's owner, as the notice states it (optional in v1)."""

    def applies_to(self, room_id: str, sender: str, sender_key: str | None) -> bool:
        """Whether this notice may explain the undecryptable event of `sender` in `room_id`.

        Only the session's own sender can withhold its key: the to-device sender (set by
        their homeserver) must be the event's sender, in the event's room, and a stated
        sender key must be the event's. Anyone else's notice is ignored.
        """
        if self.sender != sender or self.room_id != room_id:
            return False
        return self.sender_key is None or self.sender_key == sender_key


def parse_withheld(event_source: Any) -> Withheld | None:
    """Read a raw to-device event; None unless it is a well-formed room-key withheld notice."""
    if not isinstance(event_source, dict) or event_source.get("type") != WITHHELD_TYPE:
        return None
    content = event_source.get("content")
    sender = event_source.get("sender")
    if not isinstance(content, dict) or not isinstance(sender, str):
        return None
    room_id, session_id, code = (
        content.get("room_id"),
        content.get("session_id"),
        content.get("code"),
    )
    if not all(isinstance(v, str) and v for v in (room_id, session_id, code)):
        return None
    assert isinstance(room_id, str) and isinstance(session_id, str) and isinstance(code, str)
    sender_key = content.get("sender_key")
    if sender_key is not None and not (isinstance(sender_key, str) and sender_key):
        return None
    return Withheld(sender, room_id, session_id, code, sender_key)


class NoticeLimiter:
    """At most one notice per key (room, sender) per `interval` seconds; bounded memory."""

    def __init__(self, interval: float, max_keys: int = 10_000) -> None:
        self._interval = interval
        self._max_keys = max_keys
        self._last: OrderedDict[tuple[str, str], float] = OrderedDict()

    def allow(self, room_id: str, sender: str, now: float) -> bool:
        key = (room_id, sender)
        last = self._last.get(key)
        if last is not None and now - last < self._interval:
            return False
        self._last[key] = now
        self._last.move_to_end(key)
        while len(self._last) > self._max_keys:
            self._last.popitem(last=False)
        return True
