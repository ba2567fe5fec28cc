"""Non-state events: only real ciphertext, and a few plaintext events with no text.

What Element sends in clear in an encrypted room, and why each is acceptable:

- `m.room.encrypted` with the relation (`m.relates_to`: edit, thread, reply target)
  in clear, so servers can aggregate threads and edits: event ids and a relation type,
  no text (an annotation key there is held to the reaction rule);
- reactions (`m.reaction`, sent in clear by Element Web): an event id and an emoji,
  nothing else: no text, no digits;
- redactions (`m.room.redaction`): the event id and an optional reason, scanned for
  patient identifiers.

Everything else non-state is refused, and every string that travels in clear is
scanned for patient identifiers (keys and numbers included).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from bridge.guard import ciphertext
from bridge.guard.identifiers import NamedPattern, find_patient_identifier, is_invisible
from bridge.guard.refusals import (
    NOT_MEGOLM,
    TEXT_REACTION,
    TOO_DEEP,
    Refusal,
    fake_ciphertext,
    field_forbidden,
    patient_identifier,
    plaintext,
)

# What an `m.room.encrypted` content may hold besides the ciphertext: the relation
# (edits, threads, replies) that clients keep in clear so servers can aggregate it.
_ENCRYPTED_FIELDS = frozenset({"algorithm", "ciphertext", "session_id", "sender_key", "device_id"})
# Relation types Element uses: edits, threads, reactions, references (polls, verification).
_REL_TYPES = frozenset({"m.replace", "m.thread", "m.annotation", "m.reference"})
# Event ids of room versions 4 and later (all Caducée rooms): `$` + 43 url-safe base64.
_EVENT_ID = re.compile(r"\$[A-Za-z0-9_-]{43}")
_REDACTION_FIELDS = frozenset({"redacts", "reason"})
_DEVICE_ID_MAX = 64
_MAX_DEPTH = 16
_EMOJI_MAX = 32
_KEYCAP = "\u20e3"
_DEVICE = ("device id", "identifiant d'appareil")
_RELATION = ("message relation", "relation entre messages")


def _strings(value: object, depth: int = 0) -> Iterable[tuple[str, bool] | None]:
    """Every string inside a JSON value, keys and numbers included, each with whether it
    was typed text (numbers are machine data); None when nested too deep to read."""
    if isinstance(value, str):
        yield value, True
    elif isinstance(value, int | float) and not isinstance(value, bool):
        yield str(value), False
    elif depth < _MAX_DEPTH and isinstance(value, Mapping):
        for key, item in value.items():
            yield str(key), True
            yield from _strings(item, depth + 1)
    elif depth < _MAX_DEPTH and isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item, depth + 1)
    elif isinstance(value, Mapping | list | tuple):
        yield None  # deeper than any real content: refused rather than left unread


def scan(value: object, field: tuple[str, str], extra: Sequence[NamedPattern]) -> Refusal | None:
    """Refuse if any text inside ``value`` (keys, values, numbers) holds a patient identifier."""
    for found in _strings(value):
        if found is None:
            return TOO_DEEP
        text, typed = found
        kind = find_patient_identifier(text, tuple(extra), keyless=typed)
        if kind is not None:
            return patient_identifier(kind, field)
    return None


def is_emoji_only(key: object) -> bool:
    """Emoji with their modifiers, joiners and selectors; digits, `#` and `*` only as
    keycaps (1️⃣). No letters, digits, punctuation or spaces: a reaction says no text."""
    if not isinstance(key, str) or not key or len(key) > _EMOJI_MAX:
        return False
    for index, ch in enumerate(key):
        if is_invisible(ch) or unicodedata.category(ch) in ("So", "Sk"):
            continue
        if (ch.isdecimal() and ch.isascii()) or ch in "#*":
            following = key[index + 1 : index + 3].replace("\ufe0f", "")
            if following.startswith(_KEYCAP):
                continue
        return False
    return True


def _is_event_id(value: object) -> bool:
    return isinstance(value, str) and _EVENT_ID.fullmatch(value) is not None


def _is_reply_target(value: object) -> bool:
    return (
        isinstance(value, Mapping)
        and set(value) == {"event_id"}
        and _is_event_id(value["event_id"])
    )


_RELATION_FIELDS: Mapping[str, Callable[[object], bool]] = {
    "rel_type": lambda value: value in _REL_TYPES,
    "event_id": _is_event_id,
    "key": lambda value: isinstance(value, str),
    "is_falling_back": lambda value: isinstance(value, bool),
    "m.in_reply_to": _is_reply_target,
}


def _relation_problem(relation: object) -> str | None:
    """The first field of a relation that is not what clients write, or None."""
    if not isinstance(relation, Mapping):
        return "m.relates_to"
    for name, value in relation.items():
        fine = _RELATION_FIELDS.get(name)
        if fine is None or not fine(value):
            return str(name)
    return None


def _check_relation(relation: object, extra: Sequence[NamedPattern]) -> Refusal | None:
    if relation is None:
        return None
    problem = _relation_problem(relation)
    if problem is not None:
        return field_forbidden("m.relates_to", [problem])
    assert isinstance(relation, Mapping)
    if "key" in relation and not is_emoji_only(relation["key"]):
        return TEXT_REACTION
    return scan(relation, _RELATION, extra)


def _device_problem(content: Mapping[str, Any]) -> str | None:
    if "device_id" not in content:
        return None
    device = content["device_id"]
    if not isinstance(device, str) or not 0 < len(device) <= _DEVICE_ID_MAX:
        return "device_id"
    return None if device.isascii() and device.isprintable() and " " not in device else "device_id"


def _check_encrypted(content: Mapping[str, Any], extra: Sequence[NamedPattern]) -> Refusal | None:
    unknown = set(content) - _ENCRYPTED_FIELDS - {"m.relates_to"}
    if unknown:
        return field_forbidden("m.room.encrypted", unknown)
    algorithm = content.get("algorithm")
    if algorithm == ciphertext.MEGOLM:
        problem = ciphertext.megolm_problem(content)
    elif algorithm == ciphertext.OLM:
        problem = ciphertext.olm_problem(content)
    else:
        return NOT_MEGOLM
    problem = problem or _device_problem(content)
    if problem is not None:
        return fake_ciphertext(problem)
    return scan(content.get("device_id"), _DEVICE, extra) or _check_relation(
        content.get("m.relates_to"), extra
    )


DUMMY_EVENT = "org.matrix.dummy_event"


def check_message(
    event_type: str, content: Mapping[str, Any], extra: Sequence[NamedPattern]
) -> Refusal | None:
    """The rules for a non-state event: what may travel in clear, and in what shape."""
    if event_type == "m.room.redaction":
        unknown = set(content) - _REDACTION_FIELDS
        if unknown:
            return field_forbidden(event_type, unknown)
        return scan(content, ("deletion reason", "motif de suppression"), extra)
    if event_type == "m.reaction":
        # Element Web sends reactions in clear (only the relation, no body).
        if set(content) != {"m.relates_to"} or not isinstance(content["m.relates_to"], Mapping):
            return plaintext(event_type)
        relation = content["m.relates_to"]
        if set(relation) != {"rel_type", "event_id", "key"} or relation["rel_type"] != (
            "m.annotation"
        ):
            return plaintext(event_type)
        return _check_relation(relation, extra)
    if event_type == DUMMY_EVENT:
        # Synapse sends it by itself to merge a room's forward extremities: empty by design.
        return field_forbidden(event_type, set(content)) if content else None
    if event_type != "m.room.encrypted":
        return plaintext(event_type)
    return _check_encrypted(content, extra)
