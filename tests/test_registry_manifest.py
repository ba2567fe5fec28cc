"""Signing and verifying federation manifests (pure), and the signing key file."""

from __future__ import annotations

import copy
import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from signedjson.key import generate_signing_key
from signedjson.sign import sign_json
from signedjson.types import SigningKey

from bridge.registry.keys import (
    KeyFileError,
    fingerprint_of,
    load,
    load_or_create,
    parse_fingerprint,
)
from bridge.registry.manifest import (
    Contents,
    MemberEntry,
    build_manifest,
    to_ms,
    verify_manifest,
)
from bridge.registry.model import ServerName

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
KEY = generate_signing_key("k1")
OTHER_KEY = generate_signing_key("k2")
NAME = "Réseau Santé Nord"
CONTENTS = Contents.of(
    [
        MemberEntry("CHU Nord", (ServerName("hs1.example:8448"), ServerName("hs2.example"))),
        MemberEntry("Clinique du Parc", (ServerName("parc.example"),)),
    ],
    extra_homeservers=["bridge-own.example"],
    users=["@anne:hs1.example:8448"],
)


def manifest(
    *,
    key: SigningKey = KEY,
    version: int = 3,
    issued_at: datetime = NOW,
    lifetime: int = 3600,
    name: str = NAME,
) -> dict[str, Any]:
    return build_manifest(
        name, CONTENTS, version=version, issued_at=issued_at, lifetime_seconds=lifetime,
        signing_key=key,
    )  # fmt: skip


def verify(doc: object, *, last: int | None = None, at: datetime = NOW) -> Any:
    return verify_manifest(doc, fingerprint_of(KEY), at, last)


def test_a_signed_manifest_is_accepted_with_its_contents() -> None:
    verdict = verify(manifest())
    assert verdict.accepted, verdict
    assert verdict.manifest.federation == NAME
    assert verdict.manifest.version == 3
    assert verdict.manifest.contents == CONTENTS
    assert verdict.manifest.expires_at == NOW + timedelta(hours=1)
    assert set(CONTENTS.homeservers) == {
        "bridge-own.example",
        "hs1.example:8448",
        "hs2.example",
        "parc.example",
    }


def test_manifest_is_signed_the_matrix_way_under_the_federation_name() -> None:
    doc = manifest()
    assert list(doc["signatures"]) == [NAME]
    assert list(doc["signatures"][NAME]) == ["ed25519:k1"]
    assert doc["verify_keys"] == {"ed25519:k1": fingerprint_of(KEY)}
    resigned = sign_json({k: v for k, v in doc.items() if k != "signatures"}, NAME, KEY)
    assert resigned["signatures"] == doc["signatures"]


def test_equal_registries_give_identical_contents_whatever_the_order() -> None:
    shuffled = Contents.of(
        [
            MemberEntry("Clinique du Parc", (ServerName("parc.example"),)),
            MemberEntry("CHU Nord", (ServerName("hs2.example"), ServerName("hs1.example:8448"))),
        ],
        extra_homeservers=["bridge-own.example", "hs2.example"],
        users=["@anne:hs1.example:8448", "@anne:hs1.example:8448"],
    )
    assert shuffled == CONTENTS


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("homeservers", ["hs1.example:8448", "evil.example"]),
        ("users", ["@mallory:evil.example"]),
        ("version", 99),
        ("expires_at", 2**52),
        ("federation_extra", True),
        ("members", []),
    ],
)
def test_any_tampered_field_is_refused(field: str, value: object) -> None:
    doc = manifest()
    doc[field] = value
    verdict = verify(doc)
    assert not verdict.accepted
    assert verdict.reason == "bad_signature", verdict


def test_a_tampered_nested_value_is_refused() -> None:
    doc = manifest()
    doc["members"][0]["homeservers"].append("evil.example")
    assert verify(doc).reason == "bad_signature"


def test_a_manifest_signed_by_another_key_is_refused_as_wrong_key() -> None:
    verdict = verify(manifest(key=OTHER_KEY))
    assert not verdict.accepted
    assert verdict.reason == "wrong_key"


def test_another_key_claiming_the_pinned_fingerprint_is_refused() -> None:
    doc = manifest(key=OTHER_KEY)
    doc["verify_keys"] = {"ed25519:k2": fingerprint_of(KEY)}  # a lie: not covered by any sig
    assert verify(doc).reason == "bad_signature"


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.pop("signatures"),
        lambda d: d.__setitem__("signatures", {}),
        lambda d: d.__setitem__("signatures", {"Another federation": d["signatures"][NAME]}),
        lambda d: d.__setitem__("signatures", {NAME: {}}),
        lambda d: d.__setitem__("signatures", {NAME: {"rsa:k1": "abc"}}),
        lambda d: d.__setitem__("signatures", "nope"),
    ],
    ids=["absent", "empty", "other-name", "no-key", "other-algorithm", "not-a-map"],
)
def test_a_missing_signature_is_refused(mutate: Any) -> None:
    doc = manifest()
    mutate(doc)
    assert verify(doc).reason == "missing_signature"


def test_a_garbled_signature_is_refused() -> None:
    doc = manifest()
    doc["signatures"][NAME]["ed25519:k1"] = "not base64 at all!"
    assert verify(doc).reason == "bad_signature"


def test_renaming_the_federation_breaks_the_signature() -> None:
    doc = manifest()
    doc["federation"] = "Another federation"
    doc["signatures"] = {"Another federation": doc["signatures"][NAME]}
    assert verify(doc).reason == "bad_signature"


def test_an_expired_manifest_is_refused() -> None:
    doc = manifest(issued_at=NOW - timedelta(hours=2), lifetime=3600)
    verdict = verify(doc)
    assert verdict.reason == "expired"
    assert "expired at 2026-11-28 11:00:00 UTC" in verdict.message


def test_a_manifest_is_refused_from_the_very_millisecond_it_expires() -> None:
    doc = manifest(lifetime=60)
    assert verify(doc, at=NOW + timedelta(seconds=59, milliseconds=999)).accepted
    assert verify(doc, at=NOW + timedelta(seconds=60)).reason == "expired"


def test_a_manifest_from_the_future_is_refused_beyond_clock_skew() -> None:
    assert verify(manifest(issued_at=NOW + timedelta(minutes=4))).accepted
    assert verify(manifest(issued_at=NOW + timedelta(minutes=6))).reason == "not_yet_valid"


def test_an_older_version_is_refused_as_a_replay() -> None:
    old = manifest(version=2)
    assert verify(old, last=None).accepted
    verdict = verify(old, last=3)
    assert verdict.reason == "older_version"
    assert "2" in verdict.message and "3" in verdict.message


def test_the_same_version_again_is_accepted_and_a_newer_one_too() -> None:
    assert verify(manifest(version=3), last=3).accepted
    assert verify(manifest(version=4), last=3).accepted


@pytest.mark.parametrize(
    "doc",
    [None, [], "manifest", 42],
)
def test_a_non_object_is_malformed(doc: object) -> None:
    assert verify(doc).reason == "malformed"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("type", "m.room.message"),
        ("format", 2),
        ("federation", ""),
        ("federation", 7),
        ("version", "3"),
        ("version", True),
        ("version", 0),
        ("expires_at", 1.5e12),
        ("homeservers", ["not a server name!"]),
        ("homeservers", "hs1.example"),
        ("users", ["anne"]),
        ("members", [{"name": "x"}]),
        ("members", [{"name": "x", "homeservers": ["unlisted.example"]}]),
    ],
)
def test_a_correctly_signed_but_ill_formed_manifest_is_malformed(field: str, value: Any) -> None:
    """Well signed but wrong shape (a buggy peer): refused, never half-read."""
    doc = manifest()
    doc.pop("signatures")
    doc[field] = value
    name = doc["federation"] if isinstance(doc["federation"], str) and doc["federation"] else NAME
    signed = sign_json(copy.deepcopy(doc), name, KEY)
    assert verify(signed).reason == "malformed"


def test_the_pinned_fingerprint_decides_not_the_key_in_the_document() -> None:
    doc = manifest(key=OTHER_KEY)
    assert verify_manifest(doc, fingerprint_of(OTHER_KEY), NOW, None).accepted
    assert not verify_manifest(doc, fingerprint_of(KEY), NOW, None).accepted


def test_fingerprint_is_the_public_key_in_unpadded_base64() -> None:
    fingerprint = fingerprint_of(KEY)
    assert len(fingerprint) == 43 and "=" not in fingerprint
    assert parse_fingerprint(f"  {fingerprint}\n") == fingerprint


@pytest.mark.parametrize(
    "text",
    ["", "abc", fingerprint_of(KEY)[:-1], fingerprint_of(KEY) + "=", "!" * 43, "A" * 44],
    ids=["empty", "short", "one-short", "padded", "not-base64", "one-long"],
)
def test_a_bad_fingerprint_is_refused_with_a_readable_message(text: str) -> None:
    with pytest.raises(ValueError, match="not a federation key fingerprint"):
        parse_fingerprint(text)


def test_the_signing_key_is_created_once_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "federation.signing.key"
    key = load_or_create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    again = load_or_create(path)
    assert fingerprint_of(again) == fingerprint_of(key)
    assert path.read_text().startswith("ed25519 ")


def test_a_signing_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "federation.signing.key"
    load_or_create(path)
    os.chmod(path, 0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        load(path)


def test_a_garbage_key_file_is_refused_clearly(tmp_path: Path) -> None:
    path = tmp_path / "federation.signing.key"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"this is not a key\n")
    os.close(fd)
    with pytest.raises(KeyFileError, match=r"not a signing key file"):
        load(path)


def test_manifest_times_are_milliseconds() -> None:
    doc = manifest(lifetime=60)
    assert doc["issued_at"] == to_ms(NOW)
    assert doc["expires_at"] - doc["issued_at"] == 60_000
