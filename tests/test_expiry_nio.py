"""What the engine keeps of nio's events (`describe`): ids, times, kind, attachment URIs."""

from __future__ import annotations

from typing import Any

from nio import Event, MegolmEvent

from bot.expiry.nio_matrix import describe
from bot.expiry.policy import is_expirable

BASE = {"sender": "@alice:hs-a.test", "origin_server_ts": 1_700_000_000_000}


def event(event_id: str, type_: str, content: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"event_id": event_id, "type": type_, "content": content, **BASE, **extra}


def test_a_decrypted_image_counts_as_encrypted_and_yields_its_blob_and_thumbnail() -> None:
    payload = event(
        "$img",
        "m.room.message",
        {
            "msgtype": "m.image",
            "body": "radio.png",
            "file": {
                "url": "mxc://hs-a.test/blob",
                "key": {"k": "x", "alg": "A256CTR", "ext": True, "key_ops": [], "kty": "oct"},
                "iv": "x",
                "hashes": {"sha256": "x"},
                "v": "v2",
            },
            "info": {"thumbnail_file": {"url": "mxc://hs-a.test/thumb"}},
        },
    )
    parsed = Event.parse_decrypted_event(payload)
    parsed.decrypted = True
    described = describe(parsed)
    assert described is not None
    assert described.event_type == "m.room.encrypted"  # the envelope's type, not the claim
    assert described.media == ("mxc://hs-a.test/blob", "mxc://hs-a.test/thumb")
    assert described.origin_server_ts == BASE["origin_server_ts"]
    assert is_expirable(described.event_type, described.is_state)


def test_a_decrypted_payload_cannot_claim_to_be_a_redaction() -> None:
    parsed = Event.parse_decrypted_event(
        event("$sneaky", "m.room.redaction", {"redacts": "$other"}, redacts="$other")
    )
    parsed.decrypted = True
    described = describe(parsed)
    assert described is not None and is_expirable(described.event_type, described.is_state)


def test_an_undecryptable_event_still_expires_without_media() -> None:
    megolm = MegolmEvent.from_dict(
        event(
            "$secret",
            "m.room.encrypted",
            {
                "algorithm": "m.megolm.v1.aes-sha2",
                "ciphertext": "AwgAEp",
                "sender_key": "k",
                "session_id": "s",
                "device_id": "D",
            },
        )
    )
    described = describe(megolm)
    assert described is not None
    assert (described.event_type, described.is_state, described.media) == (
        "m.room.encrypted",
        False,
        (),
    )


def test_state_and_already_redacted_events_are_recognised() -> None:
    state = describe(
        Event.parse_event(event("$pl", "m.room.retention", {"max_lifetime": 1}, state_key=""))
    )
    assert state is not None and state.is_state
    gone = describe(
        Event.parse_event(
            event(
                "$old",
                "m.room.encrypted",
                {},
                unsigned={"redacted_because": {"type": "m.room.redaction"}},
            )
        )
    )
    assert gone is not None and gone.redacted
