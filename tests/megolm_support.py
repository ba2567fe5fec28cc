"""Real Olm/Megolm ciphertext for tests that send raw events through the guard.

The guard refuses anything that is not shaped like real Olm/Megolm, so tests that speak
the client-server API directly encrypt with vodozemac (the library nio uses, and the
core of Element's crypto): the server sees exactly what a client would send.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import vodozemac

MEGOLM = "m.megolm.v1.aes-sha2"
OLM = "m.olm.v1.curve25519-aes-sha2"

_ACCOUNT = vodozemac.Account()
_SESSION = vodozemac.GroupSession()


def megolm_content(text: str = "Bonjour", *, relates_to: object = None) -> dict[str, Any]:
    """A Megolm `m.room.encrypted` content, as Element writes it (with a clear relation)."""
    payload = {"type": "m.room.message", "content": {"msgtype": "m.text", "body": text}}
    message = _SESSION.encrypt(json.dumps(payload).encode())
    return {
        "algorithm": MEGOLM,
        "ciphertext": message.to_base64(),
        "session_id": _SESSION.session_id,
        "sender_key": _ACCOUNT.curve25519_key.to_base64(),
        "device_id": "TESTDEVICE",
        **({} if relates_to is None else {"m.relates_to": relates_to}),
    }


def olm_messages() -> tuple[str, tuple[int, bytes], tuple[int, bytes]]:
    """The recipient's Curve25519 key, a pre-key message and a normal message to it."""
    sender, recipient = vodozemac.Account(), vodozemac.Account()
    recipient.generate_one_time_keys(1)
    one_time_key = next(iter(recipient.one_time_keys.values()))
    outbound = sender.create_outbound_session(recipient.curve25519_key, one_time_key)
    pre_key = outbound.encrypt(b'{"type": "m.room_key"}')
    pre_key_message = pre_key.to_pre_key()
    assert pre_key_message is not None
    inbound, _ = recipient.create_inbound_session(sender.curve25519_key, pre_key_message)
    normal = inbound.encrypt(b'{"type": "m.dummy", "content": {}}')
    return recipient.curve25519_key.to_base64(), pre_key.to_parts(), normal.to_parts()


def olm_content() -> dict[str, Any]:
    """An Olm `m.room.encrypted` content holding a pre-key message."""
    recipient, (kind, body), _ = olm_messages()
    return {
        "algorithm": OLM,
        "sender_key": _ACCOUNT.curve25519_key.to_base64(),
        "ciphertext": {recipient: {"type": kind, "body": _unpadded(body)}},
    }


def _unpadded(raw: bytes) -> str:
    return base64.b64encode(raw).decode().rstrip("=")
