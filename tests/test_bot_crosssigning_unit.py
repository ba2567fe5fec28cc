"""Unit tests of the pure cross-signing parts: signing, chains, trust on first use, files."""

from __future__ import annotations

import copy
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from signedjson.key import decode_verify_key_bytes
from signedjson.sign import SignatureVerifyException, verify_signed_json
from unpaddedbase64 import decode_base64

from bot.crypto.cross_signing import (
    CrossSigningKeys,
    device_signature_upload_body,
    device_signing_upload_body,
    single_ed25519_key,
)
from bot.crypto.keyfiles import (
    PinStore,
    ensure_private_dir,
    ensure_private_file,
    load_cross_signing_keys,
    read_or_create_secret,
    save_cross_signing_keys,
)
from bot.crypto.signing import KeyFormatError, SigningKey, sign_json, verify_signature
from bot.crypto.trust import (
    PinOutcome,
    Verdict,
    evaluate_user,
    identity_from_query,
    plan_own_cross_signing,
)

ALICE = "@alice:hs-a"


def device_keys(user_id: str, device_id: str, key: SigningKey) -> dict[str, Any]:
    body = {
        "user_id": user_id,
        "device_id": device_id,
        "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
        "keys": {
            f"ed25519:{device_id}": key.public_b64,
            f"curve25519:{device_id}": "Y3VydmU",
        },
    }
    signed = sign_json(body, user_id, key, key_id=f"ed25519:{device_id}")
    signed["unsigned"] = {"device_display_name": "phone"}
    return signed


def query_answer(
    user_id: str, keys: CrossSigningKeys | None, devices: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    answer: dict[str, Any] = {"device_keys": {user_id: devices}, "failures": {}}
    if keys is not None:
        upload = device_signing_upload_body(user_id, keys)
        answer["master_keys"] = {user_id: upload["master_key"]}
        answer["self_signing_keys"] = {user_id: upload["self_signing_key"]}
    return answer


def cross_signed(user_id: str, dev: dict[str, Any], keys: CrossSigningKeys) -> dict[str, Any]:
    body = device_signature_upload_body(user_id, dev, keys.self_signing)
    signed = body[user_id][dev["device_id"]]
    signed["unsigned"] = dev.get("unsigned", {})
    return dict(signed)


def test_signature_is_accepted_by_an_independent_implementation() -> None:
    key = SigningKey.generate()
    signed = sign_json({"b": 1, "a": "é", "unsigned": {"x": 1}}, ALICE, key)
    verify_key = decode_verify_key_bytes(key.key_id, decode_base64(key.public_b64))
    verify_signed_json(signed, ALICE, verify_key)  # raises when invalid
    signed["b"] = 2
    with pytest.raises(SignatureVerifyException):
        verify_signed_json(signed, ALICE, verify_key)


def test_signature_ignores_unsigned_and_other_signatures() -> None:
    key, other = SigningKey.generate(), SigningKey.generate()
    signed = sign_json({"a": 1}, ALICE, key)
    signed = sign_json(signed, "@bob:hs-b", other)
    signed["unsigned"] = {"anything": True}
    assert verify_signature(signed, ALICE, key.key_id, key.public_b64)
    assert verify_signature(signed, "@bob:hs-b", other.key_id, other.public_b64)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda s, k: s.update(a=2),
        lambda s, k: s["signatures"][ALICE].update({k.key_id: "bm90IGEgc2lnbmF0dXJl"}),
        lambda s, k: s["signatures"][ALICE].update({k.key_id: 42}),
        lambda s, k: s["signatures"][ALICE].update({k.key_id: "!!not base64"}),
        lambda s, k: s.pop("signatures"),
    ],
)
def test_tampered_or_malformed_signature_is_refused_without_raising(mutate: Any) -> None:
    key = SigningKey.generate()
    signed = sign_json({"a": 1}, ALICE, key)
    mutate(signed, key)
    assert not verify_signature(signed, ALICE, key.key_id, key.public_b64)


def test_verify_with_wrong_public_key_fails() -> None:
    key, other = SigningKey.generate(), SigningKey.generate()
    signed = sign_json({"a": 1}, ALICE, key)
    assert not verify_signature(signed, ALICE, key.key_id, other.public_b64)
    assert not verify_signature(signed, ALICE, key.key_id, "not base64 !")


def test_seed_round_trip_and_bad_seed() -> None:
    key = SigningKey.generate()
    assert SigningKey.from_seed_b64(key.seed_b64) == key
    assert key.seed_b64 not in repr(key)
    with pytest.raises(KeyFormatError):
        SigningKey.from_seed_b64("c2hvcnQ")
    with pytest.raises(KeyFormatError):
        CrossSigningKeys.from_seeds({"master": key.seed_b64})
    with pytest.raises(KeyFormatError):
        CrossSigningKeys.from_seeds(["not", "a", "dict"])


def test_upload_body_chains_to_the_master_key() -> None:
    keys = CrossSigningKeys.generate()
    body = device_signing_upload_body(ALICE, keys)
    master = single_ed25519_key(body["master_key"])
    assert master == keys.master.public_b64
    assert body["master_key"]["usage"] == ["master"]
    for name in ("self_signing_key", "user_signing_key"):
        assert verify_signature(body[name], ALICE, f"ed25519:{master}", master)
    identity = identity_from_query(
        ALICE,
        {
            "master_keys": {ALICE: body["master_key"]},
            "self_signing_keys": {ALICE: body["self_signing_key"]},
        },
    )
    assert identity.self_signing_public == keys.self_signing.public_b64


def test_single_key_extraction_refuses_odd_shapes() -> None:
    pub = SigningKey.generate().public_b64
    assert single_ed25519_key({"keys": {f"ed25519:{pub}": pub}}) == pub
    assert single_ed25519_key({"keys": {f"ed25519:{pub}": "other"}}) is None
    assert single_ed25519_key({"keys": {f"curve25519:{pub}": pub}}) is None
    assert single_ed25519_key({"keys": {}}) is None
    assert single_ed25519_key("nope") is None


def test_cross_signed_device_is_trusted_and_unsigned_one_is_not() -> None:
    keys = CrossSigningKeys.generate()
    phone = device_keys(ALICE, "PHONE", SigningKey.generate())
    laptop = device_keys(ALICE, "LAPTOP", SigningKey.generate())
    answer = query_answer(
        ALICE, keys, {"PHONE": cross_signed(ALICE, phone, keys), "LAPTOP": laptop}
    )
    trust = evaluate_user(ALICE, answer, None)
    assert trust.pin is PinOutcome.PINNED_NOW
    assert trust.master_public == keys.master.public_b64
    assert trust.devices == {"PHONE": Verdict.CROSS_SIGNED, "LAPTOP": Verdict.NOT_SIGNED}
    assert trust.trusted_devices() == {"PHONE"}


def test_device_signed_by_a_self_signing_key_the_master_did_not_sign_is_refused() -> None:
    keys = CrossSigningKeys.generate()
    rogue = CrossSigningKeys(keys.master, SigningKey.generate(), keys.user_signing)
    phone = device_keys(ALICE, "PHONE", SigningKey.generate())
    answer = query_answer(ALICE, keys, {"PHONE": cross_signed(ALICE, phone, rogue)})
    rogue_ssk = device_signing_upload_body(ALICE, rogue)["self_signing_key"]
    rogue_ssk["signatures"] = {}  # published but not signed by the master
    answer["self_signing_keys"][ALICE] = rogue_ssk
    assert evaluate_user(ALICE, answer, None).devices["PHONE"] is Verdict.BAD_SELF_SIGNING


def test_changed_master_key_untrusts_every_device() -> None:
    old, new = CrossSigningKeys.generate(), CrossSigningKeys.generate()
    phone = device_keys(ALICE, "PHONE", SigningKey.generate())
    answer = query_answer(ALICE, new, {"PHONE": cross_signed(ALICE, phone, new)})
    trust = evaluate_user(ALICE, answer, old.master.public_b64)
    assert trust.pin is PinOutcome.CHANGED
    assert trust.devices == {"PHONE": Verdict.IDENTITY_CHANGED}
    assert evaluate_user(ALICE, answer, new.master.public_b64).pin is PinOutcome.MATCHES


def test_user_without_identity_and_forged_device_keys() -> None:
    phone = device_keys(ALICE, "PHONE", SigningKey.generate())
    assert evaluate_user(ALICE, query_answer(ALICE, None, {"PHONE": phone}), None).devices == {
        "PHONE": Verdict.NO_IDENTITY
    }
    keys = CrossSigningKeys.generate()
    forged = cross_signed(ALICE, phone, keys)
    forged["keys"]["curve25519:PHONE"] = "c3dhcHBlZA"  # breaks the device's self-signature
    trust = evaluate_user(ALICE, query_answer(ALICE, keys, {"PHONE": forged}), None)
    assert trust.devices["PHONE"] is Verdict.BAD_DEVICE_KEYS
    misfiled = query_answer(ALICE, keys, {"OTHER": cross_signed(ALICE, phone, keys)})
    assert evaluate_user(ALICE, misfiled, None).devices["OTHER"] is Verdict.BAD_DEVICE_KEYS


def test_own_plan_first_start_restart_lost_device_and_foreign_identity() -> None:
    keys = CrossSigningKeys.generate()
    m, s = keys.master.public_b64, keys.self_signing.public_b64
    dev = device_keys(ALICE, "BOT1", SigningKey.generate())

    first = plan_own_cross_signing(
        ALICE, "BOT1", query_answer(ALICE, None, {"BOT1": dev}), None, None
    )
    assert (first.generate, first.upload, first.sign_device, first.foreign_master) == (
        True,
        True,
        True,
        None,
    )

    signed = query_answer(ALICE, keys, {"BOT1": cross_signed(ALICE, dev, keys)})
    assert plan_own_cross_signing(ALICE, "BOT1", signed, m, s).nothing_to_do

    new_dev = device_keys(ALICE, "BOT2", SigningKey.generate())
    lost = query_answer(ALICE, keys, {"BOT1": cross_signed(ALICE, dev, keys), "BOT2": new_dev})
    relogin = plan_own_cross_signing(ALICE, "BOT2", lost, m, s)
    assert (relogin.upload, relogin.sign_device, relogin.generate) == (False, True, False)

    other = CrossSigningKeys.generate()
    reset = plan_own_cross_signing(ALICE, "BOT1", query_answer(ALICE, other, {"BOT1": dev}), m, s)
    assert reset.foreign_master == other.master.public_b64 and reset.upload
    lost_file = plan_own_cross_signing(ALICE, "BOT1", signed, None, None)
    assert lost_file.generate and lost_file.foreign_master == m

    unpublished = plan_own_cross_signing(ALICE, "BOT1", query_answer(ALICE, None, {}), None, None)
    assert not unpublished.device_published and not unpublished.sign_device


def test_key_file_is_private_and_round_trips(tmp_path: Path) -> None:
    store = ensure_private_dir(tmp_path / "store" / "nested")
    assert stat.S_IMODE(store.stat().st_mode) == 0o700
    keys = CrossSigningKeys.generate()
    path = store / "cross_signing.json"
    assert load_cross_signing_keys(path) is None
    save_cross_signing_keys(path, keys)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_cross_signing_keys(path) == keys
    assert [p.name for p in store.iterdir()] == ["cross_signing.json"]  # no temp left over


def test_secret_file_generated_private_and_wide_modes_refused(tmp_path: Path) -> None:
    path = tmp_path / "pickle.key"
    secret = read_or_create_secret(path)
    assert len(secret) >= 40
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_or_create_secret(path) == secret
    path.chmod(0o644)
    with pytest.raises(PermissionError, match="chmod 600"):
        read_or_create_secret(path)
    path.chmod(0o600)
    path.write_text("\n")
    with pytest.raises(ValueError, match="empty"):
        read_or_create_secret(path)


def test_private_file_is_created_0600_even_with_a_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        path = ensure_private_file(tmp_path / "crypto.db")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_pin_store_persists_pins_and_flags_changes_once(tmp_path: Path) -> None:
    path = tmp_path / "pins.json"
    pins = PinStore(path)
    assert pins.get(ALICE) is None
    pins.pin(ALICE, "K1")
    assert pins.flag_change(ALICE, "K2")
    assert not pins.flag_change(ALICE, "K2")
    again = PinStore(path)
    assert again.get(ALICE) == "K1" and again.changed() == {ALICE: "K2"}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert again.forget(ALICE) and PinStore(path).get(ALICE) is None


def test_signing_does_not_modify_its_input() -> None:
    key = SigningKey.generate()
    body = {"a": {"b": 1}}
    before = copy.deepcopy(body)
    sign_json(body, ALICE, key)
    assert body == before
