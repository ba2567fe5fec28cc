"""The federation manifest: what a federation publishes about itself, and how peers check it.

A manifest is a JSON object signed the way Matrix signs events and server keys: an Ed25519
signature over the canonical JSON of the object without its `signatures` (and `unsigned`),
placed at `signatures[<federation name>]["ed25519:<key id>"]` (signedjson). Format 1:

    {"type": "fr.caducee.federation.manifest", "format": 1,
     "federation": "Réseau Santé Nord",
     "verify_keys": {"ed25519:a1b2c3": "<public key, unpadded base64>"},
     "version": 7, "issued_at": 1764300000000, "expires_at": 1764386400000,
     "members": [{"name": "CHU Nord", "homeservers": ["matrix.chu-nord.fr"]}],
     "homeservers": ["matrix.chu-nord.fr", ...],
     "users": ["@anne.martin:matrix.chu-nord.fr", ...],
     "signatures": {"Réseau Santé Nord": {"ed25519:a1b2c3": "<signature>"}}}

`version` grows by one whenever the content changes (never otherwise), so a peer refuses an
older manifest replayed to it; `expires_at` bounds how long a captured manifest can be
replayed at all. Times are milliseconds since the epoch, as everywhere in Matrix.

`verify_manifest` is the whole trust decision, pure: it never trusts the key a document
carries, only the fingerprint the admin pinned when peering.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

from signedjson.sign import SignatureVerifyException, sign_json, verify_signed_json
from signedjson.types import SigningKey

from bridge.config import is_valid_server_name
from bridge.registry.keys import ALGORITHM, fingerprint_of, key_id, verify_key_for
from bridge.registry.model import FederationName, Fingerprint, ServerName

MANIFEST_TYPE: Final = "fr.caducee.federation.manifest"
FORMAT: Final = 1
CLOCK_SKEW_MS: Final = 5 * 60 * 1000
"""A manifest issued up to five minutes "in the future" is accepted (clocks differ)."""
MAX_NAME_LENGTH: Final = 200

Reason = Literal[
    "malformed",
    "missing_signature",
    "wrong_key",
    "bad_signature",
    "expired",
    "not_yet_valid",
    "older_version",
]


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def to_ms(moment: datetime) -> int:
    """Exact (no float rounding), so `to_ms(from_ms(ms)) == ms`."""
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


@dataclass(frozen=True, slots=True)
class MemberEntry:
    name: str
    homeservers: tuple[ServerName, ...]


@dataclass(frozen=True, slots=True)
class Contents:
    """What a manifest says, apart from version, times and signature."""

    members: tuple[MemberEntry, ...]
    homeservers: tuple[ServerName, ...]
    users: tuple[str, ...]

    @classmethod
    def of(
        cls,
        members: Iterable[MemberEntry],
        extra_homeservers: Iterable[str] = (),
        users: Iterable[str] = (),
    ) -> Contents:
        """Sorted and de-duplicated, so equal registries give byte-identical manifests."""
        ordered = tuple(
            MemberEntry(m.name, tuple(sorted(set(m.homeservers))))
            for m in sorted(members, key=lambda m: m.name)
        )
        servers = {s for m in ordered for s in m.homeservers} | set(extra_homeservers)
        return cls(
            ordered,
            tuple(ServerName(s) for s in sorted(servers)),
            tuple(sorted(set(users))),
        )

    def body(self) -> dict[str, Any]:
        return {
            "members": [{"name": m.name, "homeservers": list(m.homeservers)} for m in self.members],
            "homeservers": list(self.homeservers),
            "users": list(self.users),
        }


@dataclass(frozen=True, slots=True)
class Manifest:
    """A verified manifest."""

    federation: FederationName
    version: int
    issued_at: datetime
    expires_at: datetime
    contents: Contents


@dataclass(frozen=True, slots=True)
class Verdict:
    """Accepted (`manifest` set) or refused (`reason` and a `message` for the logs and admin)."""

    manifest: Manifest | None
    reason: Reason | None = None
    message: str = ""

    @property
    def accepted(self) -> bool:
        return self.manifest is not None


def build_manifest(
    federation: str,
    contents: Contents,
    *,
    version: int,
    issued_at: datetime,
    lifetime_seconds: int,
    signing_key: SigningKey,
) -> dict[str, Any]:
    """The signed manifest document, ready to serve as JSON."""
    issued = to_ms(issued_at)
    document: dict[str, Any] = {
        "type": MANIFEST_TYPE,
        "format": FORMAT,
        "federation": federation,
        "verify_keys": {key_id(signing_key): fingerprint_of(signing_key)},
        "version": version,
        "issued_at": issued,
        "expires_at": issued + lifetime_seconds * 1000,
        **contents.body(),
    }
    signed: dict[str, Any] = sign_json(document, federation, signing_key)
    return signed


def _refuse(reason: Reason, message: str) -> Verdict:
    return Verdict(None, reason, message)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _server_list(value: object) -> tuple[ServerName, ...] | None:
    if not isinstance(value, list):
        return None
    servers: list[ServerName] = []
    for item in value:
        if not isinstance(item, str) or not is_valid_server_name(item):
            return None
        servers.append(ServerName(item.lower()))
    return tuple(servers)


def _user_list(value: object) -> tuple[str, ...] | None:
    if not isinstance(value, list):
        return None
    users: list[str] = []
    for item in value:
        if not isinstance(item, str) or not item.startswith("@") or ":" not in item:
            return None
        users.append(item)
    return tuple(users)


def _member_list(value: object) -> tuple[MemberEntry, ...] | None:
    if not isinstance(value, list):
        return None
    members: list[MemberEntry] = []
    for item in value:
        if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
            return None
        servers = _server_list(item.get("homeservers"))
        if servers is None:
            return None
        members.append(MemberEntry(item["name"], servers))
    return tuple(members)


def _check_signature(doc: Mapping[str, Any], name: str, fingerprint: Fingerprint) -> Verdict | None:
    """None when a signature by the pinned key is valid; a refusal otherwise."""
    signatures = doc.get("signatures")
    ours = signatures.get(name) if isinstance(signatures, Mapping) else None
    key_ids = [
        k for k in (ours if isinstance(ours, Mapping) else {}) if k.startswith(f"{ALGORITHM}:")
    ]
    if not key_ids:
        return _refuse("missing_signature", f"no {ALGORITHM} signature by {name!r}")
    for candidate in key_ids:
        try:
            verify_signed_json(dict(doc), name, verify_key_for(fingerprint, candidate))
        except (SignatureVerifyException, ValueError, TypeError):
            continue
        return None
    declared = doc.get("verify_keys")
    if isinstance(declared, Mapping) and declared and fingerprint not in declared.values():
        return _refuse(
            "wrong_key",
            "signed with another key than the pinned fingerprint "
            "(the peer changed its key, or this is not the federation you peered with)",
        )
    return _refuse("bad_signature", "the signature does not match the content (tampered)")


def verify_manifest(
    doc: object, expected_fingerprint: Fingerprint, now: datetime, last_version: int | None
) -> Verdict:
    """Whether to accept a peer's manifest.

    Args:
        doc: the parsed JSON as received.
        expected_fingerprint: the key the admin pinned when peering.
        now: the current time (aware).
        last_version: the version of the last manifest accepted from this peer, if any; an
            older one is a replay. The same version again is accepted (same content, later
            expiry: a peer re-signs on every request).
    """
    if not isinstance(doc, Mapping):
        return _refuse("malformed", "not a JSON object")
    if doc.get("type") != MANIFEST_TYPE or doc.get("format") != FORMAT:
        return _refuse("malformed", f"not a format-{FORMAT} federation manifest")
    name = doc.get("federation")
    if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME_LENGTH:
        return _refuse("malformed", "no federation name")
    refusal = _check_signature(doc, name, expected_fingerprint)
    if refusal is not None:
        return refusal
    version, issued, expires = doc.get("version"), doc.get("issued_at"), doc.get("expires_at")
    if not (_is_int(version) and _is_int(issued) and _is_int(expires)):
        return _refuse("malformed", "version, issued_at and expires_at must be integers")
    assert isinstance(version, int) and isinstance(issued, int) and isinstance(expires, int)
    members = _member_list(doc.get("members"))
    homeservers = _server_list(doc.get("homeservers"))
    users = _user_list(doc.get("users"))
    if members is None or homeservers is None or users is None or version < 1:
        return _refuse("malformed", "members, homeservers or users are not well-formed")
    if not {s for m in members for s in m.homeservers} <= set(homeservers):
        return _refuse("malformed", "a member's homeserver is missing from the homeservers list")
    now_ms = to_ms(now)
    if expires <= now_ms:
        return _refuse("expired", f"expired at {from_ms(expires):%Y-%m-%d %H:%M:%S} UTC")
    if issued > now_ms + CLOCK_SKEW_MS:
        return _refuse("not_yet_valid", "issued in the future (check the clocks)")
    if last_version is not None and version < last_version:
        return _refuse(
            "older_version", f"version {version} is older than the accepted {last_version}"
        )
    contents = Contents(members, homeservers, users)
    return Verdict(
        Manifest(FederationName(name), version, from_ms(issued), from_ms(expires), contents)
    )
