"""Is this `m.room.encrypted` content really Olm or Megolm ciphertext?

A homeserver cannot decrypt, but it can tell whether what claims to be ciphertext has
the shape every Olm/Megolm implementation (libolm, vodozemac: Element Web, Element X,
matrix-nio) produces. Anything else is plain data dressed up as ciphertext, and would
sit in clear in every member server's database: refused.

Wire formats (version 3, the only one in use; measured on vodozemac 0.10):

- Megolm: `0x03`, field 1 (tag `0x08`) varint message index, field 2 (tag `0x12`)
  length-prefixed AES-CBC ciphertext (a non-empty multiple of 16 bytes), then an 8-byte
  MAC and a 64-byte Ed25519 signature.
- Olm normal message (type 1): `0x03`, field 1 (`0x0A`) 32-byte ratchet key, field 2
  (`0x10`) varint chain index, field 4 (`0x22`) ciphertext (multiple of 16), 8-byte MAC.
- Olm pre-key message (type 0): `0x03`, fields 1, 2, 3 (`0x0A`, `0x12`, `0x1A`) the
  32-byte one-time, base and identity keys, field 4 (`0x22`) a normal message.

Fields come in this order, each once, and nothing else is allowed in between: extra
protobuf fields would be a place to carry text. Every opaque part of 16 bytes or more
must also not read as text: real ciphertext, keys and signatures are random bytes, and
the chance that random bytes of that length are printable text is below one in ten
million. What no server can rule out is a member who encrypts, or encodes, text on
purpose for an accomplice: that member could as well hand the text over directly.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping

MEGOLM = "m.megolm.v1.aes-sha2"
OLM = "m.olm.v1.curve25519-aes-sha2"

_VERSION = 0x03
_KEY_LENGTH = 32
_MAC_LENGTH = 8
_SIGNATURE_LENGTH = 64
_AES_BLOCK = 16
_TEXT_LIKE_MIN = 16
_UNPADDED_BASE64 = re.compile(r"[A-Za-z0-9+/]*")
_MAX_VARINT_BYTES = 5  # message and chain indexes are 32-bit


def unpadded_base64(text: object) -> bytes | None:
    """The bytes of a strictly unpadded standard base64 string, or None."""
    if not isinstance(text, str) or not text or len(text) % 4 == 1:
        return None
    if _UNPADDED_BASE64.fullmatch(text) is None:
        return None
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None
    # Non-canonical encodings (stray bits in the last character) are not what a
    # client writes: refusing them keeps one encoding per message.
    if base64.b64encode(raw).decode().rstrip("=") != text:
        return None
    return raw


def is_key(text: object) -> bool:
    """A Curve25519/Ed25519 public key or a Megolm session id: 32 bytes, unpadded base64."""
    raw = unpadded_base64(text)
    return raw is not None and len(raw) == _KEY_LENGTH and not _reads_as_text(raw)


def _reads_as_text(part: bytes) -> bool:
    if len(part) < _TEXT_LIKE_MIN:
        return False
    try:
        text = part.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(ch.isprintable() or ch in "\t\n\r" for ch in text)


class _Reader:
    """Reads the protobuf-like fields of an Olm/Megolm message, strictly in order."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0

    def varint(self) -> int | None:
        value = shift = 0
        for count in range(_MAX_VARINT_BYTES):
            if self.at >= len(self.data):
                return None
            byte = self.data[self.at]
            self.at += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return value if count == 0 or byte else None  # no padded varints
        return None

    def tag(self, expected: int) -> bool:
        if self.at < len(self.data) and self.data[self.at] == expected:
            self.at += 1
            return True
        return False

    def varint_field(self, tag: int) -> bool:
        return self.tag(tag) and self.varint() is not None

    def bytes_field(self, tag: int) -> bytes | None:
        if not self.tag(tag):
            return None
        length = self.varint()
        if length is None or self.at + length > len(self.data):
            return None
        part = self.data[self.at : self.at + length]
        self.at += length
        return part

    def rest(self) -> bytes:
        return self.data[self.at :]


def _is_ciphertext(part: bytes | None) -> bool:
    return part is not None and len(part) > 0 and len(part) % _AES_BLOCK == 0


def _none_reads_as_text(*parts: bytes | None) -> bool:
    return not any(part is not None and _reads_as_text(part) for part in parts)


def is_megolm_message(raw: bytes) -> bool:
    reader = _Reader(raw)
    if not reader.tag(_VERSION) or not reader.varint_field(0x08):
        return False
    ciphertext = reader.bytes_field(0x12)
    trailer = reader.rest()
    if not _is_ciphertext(ciphertext) or len(trailer) != _MAC_LENGTH + _SIGNATURE_LENGTH:
        return False
    return _none_reads_as_text(ciphertext, trailer[_MAC_LENGTH:])


def _is_olm_normal(raw: bytes) -> bool:
    reader = _Reader(raw)
    if not reader.tag(_VERSION):
        return False
    ratchet_key = reader.bytes_field(0x0A)
    if ratchet_key is None or len(ratchet_key) != _KEY_LENGTH or not reader.varint_field(0x10):
        return False
    ciphertext = reader.bytes_field(0x22)
    if not _is_ciphertext(ciphertext) or len(reader.rest()) != _MAC_LENGTH:
        return False
    return _none_reads_as_text(ratchet_key, ciphertext)


def _is_olm_pre_key(raw: bytes) -> bool:
    reader = _Reader(raw)
    if not reader.tag(_VERSION):
        return False
    keys = [reader.bytes_field(tag) for tag in (0x0A, 0x12, 0x1A)]
    if any(key is None or len(key) != _KEY_LENGTH for key in keys):
        return False
    inner = reader.bytes_field(0x22)
    if inner is None or reader.rest():
        return False
    return _none_reads_as_text(*keys) and _is_olm_normal(inner)


def is_olm_message(message_type: object, raw: bytes) -> bool:
    if message_type == 0 and not isinstance(message_type, bool):
        return _is_olm_pre_key(raw)
    if message_type == 1 and not isinstance(message_type, bool):
        return _is_olm_normal(raw)
    return False


def megolm_problem(content: Mapping[str, object]) -> str | None:
    """What is wrong with a Megolm `m.room.encrypted` content's crypto fields, or None.

    `session_id` is required (the recipient could not find the key without it);
    `sender_key` and `device_id` are deprecated since Matrix 1.3 but still sent by
    some clients: optional, and shaped when present.
    """
    raw = unpadded_base64(content.get("ciphertext"))
    if raw is None or not is_megolm_message(raw):
        return "ciphertext"
    if not is_key(content.get("session_id")):
        return "session_id"
    if "sender_key" in content and not is_key(content["sender_key"]):
        return "sender_key"
    return None


def olm_problem(content: Mapping[str, object]) -> str | None:
    """What is wrong with an Olm `m.room.encrypted` content's crypto fields, or None."""
    if not is_key(content.get("sender_key")):
        return "sender_key"
    recipients = content.get("ciphertext")
    if not isinstance(recipients, Mapping) or not recipients:
        return "ciphertext"
    for key, message in recipients.items():
        if not is_key(key) or not isinstance(message, Mapping) or set(message) != {"type", "body"}:
            return "ciphertext"
        raw = unpadded_base64(message["body"])
        if raw is None or not is_olm_message(message["type"], raw):
            return "ciphertext"
    return None
