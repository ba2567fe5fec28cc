"""Only real Olm/Megolm ciphertext passes as `m.room.encrypted` (pure rules, vodozemac data)."""

from __future__ import annotations

import base64
import os
from typing import Any

import pytest

from bridge.guard.ciphertext import (
    is_megolm_message,
    is_olm_message,
    megolm_problem,
    olm_problem,
    unpadded_base64,
)
from bridge.guard.messages import check_message
from tests.megolm_support import MEGOLM, OLM, megolm_content, olm_content, olm_messages


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode().rstrip("=")


def real_megolm_bytes() -> bytes:
    raw = unpadded_base64(megolm_content("Mme X, VIH+")["ciphertext"])
    assert raw is not None
    return raw


def forged_megolm(ciphertext: bytes, *, index: bytes = b"\x00", trailer: int = 72) -> bytes:
    """A Megolm frame around chosen bytes: what a tool smuggling text would build."""
    return (
        b"\x03\x08" + index + b"\x12" + bytes([len(ciphertext)]) + ciphertext + os.urandom(trailer)
    )


def rule(content: dict[str, Any]) -> str | None:
    refusal = check_message("m.room.encrypted", content, ())
    return None if refusal is None else refusal.rule


def test_real_megolm_and_olm_pass() -> None:
    assert megolm_problem(megolm_content()) is None
    assert rule(megolm_content()) is None
    assert (
        rule(megolm_content(relates_to={"rel_type": "m.thread", "event_id": "$" + "a" * 43}))
        is None
    )
    assert olm_problem(olm_content()) is None
    assert rule(olm_content()) is None
    _, (pre_type, pre_key), (normal_type, normal) = olm_messages()
    assert is_olm_message(pre_type, pre_key) and is_olm_message(normal_type, normal)


def test_deprecated_fields_are_optional() -> None:
    content = megolm_content()
    del content["sender_key"], content["device_id"]
    assert rule(content) is None


PLAIN = "Mme X, 45 ans, VIH+ : bilan à refaire"
RANDOM_WRONG_VERSION = b"\x04" + real_megolm_bytes()[1:]


@pytest.mark.parametrize(
    ("ciphertext", "why"),
    [
        (PLAIN, "plain text"),
        (b64(PLAIN.encode()), "base64 of plain text"),
        (b64(PLAIN.encode()) + "==", "padded base64"),
        (b64(RANDOM_WRONG_VERSION), "right length, random, wrong version byte"),
        (b64(os.urandom(len(real_megolm_bytes()))), "random blob of the right length"),
        (b64(real_megolm_bytes()[:-1]), "one byte short"),
        (b64(real_megolm_bytes() + b"\x00"), "one byte too many"),
        (b64(forged_megolm(PLAIN.encode()[:32])), "text in a Megolm frame"),
        (b64(forged_megolm(os.urandom(33))), "not whole AES blocks"),
        (b64(forged_megolm(os.urandom(32), index=b"\x80\x00")), "padded varint"),
        (b64(forged_megolm(os.urandom(32), trailer=71)), "short signature"),
        (b64(b"\x03\x08\x00\x1a\x04text" + real_megolm_bytes()[3:]), "extra protobuf field"),
        (real_megolm_bytes().hex(), "hexadecimal"),
        (base64.urlsafe_b64encode(b"\xfb" * 96).decode().rstrip("="), "url-safe alphabet"),
        ("", "empty"),
    ],
)
def test_what_is_not_megolm_is_refused(ciphertext: str, why: str) -> None:
    assert rule(megolm_content() | {"ciphertext": ciphertext}) == "ciphertext_malformed", why


def test_text_hidden_in_a_signature_is_refused() -> None:
    frame = forged_megolm(os.urandom(32), trailer=8)
    assert not is_megolm_message(frame + b"A" * 64)
    assert is_megolm_message(frame + os.urandom(64))


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"session_id": "S"}, "ciphertext_malformed"),
        ({"session_id": b64(b"Mme X VIH+ " * 3)[:43]}, "ciphertext_malformed"),
        ({"sender_key": "k"}, "ciphertext_malformed"),
        ({"device_id": "Mme X VIH+"}, "ciphertext_malformed"),
        ({"device_id": ""}, "ciphertext_malformed"),
        ({"algorithm": "m.megolm.v2.aes-sha2"}, "encryption_required"),
        ({"algorithm": None}, "encryption_required"),
        ({"body": "Mme X"}, "field_forbidden"),
        ({"formatted_body": "<b>Mme X</b>"}, "field_forbidden"),
        ({"m.new_content": {"body": "Mme X"}}, "field_forbidden"),
        ({"note": "x"}, "field_forbidden"),
    ],
)
def test_megolm_fields_must_have_their_shape(change: dict[str, Any], expected: str) -> None:
    assert rule(megolm_content() | change) == expected


def test_a_missing_session_id_is_refused() -> None:
    content = megolm_content()
    del content["session_id"]
    assert rule(content) == "ciphertext_malformed"


def test_what_is_not_olm_is_refused() -> None:
    good = olm_content()
    [(recipient, message)] = good["ciphertext"].items()
    forged: list[dict[str, Any]] = [
        {**good, "ciphertext": {recipient: {"type": 0, "body": b64(PLAIN.encode())}}},
        {**good, "ciphertext": {recipient: {"type": 1, "body": message["body"]}}},
        {**good, "ciphertext": {recipient: {"type": True, "body": message["body"]}}},
        {**good, "ciphertext": {recipient: {**message, "plain": PLAIN}}},
        {**good, "ciphertext": {"Mme X": message}},
        {**good, "ciphertext": {}},
        {**good, "ciphertext": PLAIN},
        {**good, "sender_key": "k"},
    ]
    for content in forged:
        assert rule(content) == "ciphertext_malformed", content
    assert good["algorithm"] == OLM and MEGOLM != OLM


@pytest.mark.parametrize(
    "relation",
    [
        {"rel_type": "m.replace", "event_id": "$Mme X VIH+"},
        {"rel_type": "Mme X VIH+", "event_id": "$" + "a" * 43},
        {"m.in_reply_to": {"event_id": "$" + "a" * 43, "body": "Mme X"}},
        {"rel_type": "m.thread", "event_id": "$" + "a" * 43, "body": "Mme X"},
        {"rel_type": "m.annotation", "event_id": "$" + "a" * 43, "key": "VIH+"},
        "Mme X",
    ],
)
def test_relations_in_clear_carry_no_text(relation: object) -> None:
    assert rule(megolm_content(relates_to=relation)) is not None


def test_unpadded_base64_is_strict() -> None:
    assert unpadded_base64("QQ") == b"A"
    for bad in ("QQ==", "QR", "Q", "Q Q", "QQ\n", 12, None):
        assert unpadded_base64(bad) is None, bad
