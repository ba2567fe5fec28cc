"""Cross-sign our own device against the homeserver (the thin async shell of this package).

Works for any account with a nio client: the bot uses it at every start, and test clients use
it so that Element-style "only cross-signed devices" peers accept them. All decisions come from
`plan_own_cross_signing`; this module only performs the HTTP calls it asks for and checks
their answers (``/keys/signatures/upload`` answers 200 even when it rejects a signature: its
``failures`` map is what counts).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from bot.crypto.cross_signing import (
    CrossSigningKeys,
    device_signature_upload_body,
    device_signing_upload_body,
)
from bot.crypto.keyfiles import load_cross_signing_keys, save_cross_signing_keys
from bot.crypto.signing import Json
from bot.crypto.trust import OwnPlan, device_signed_by, plan_own_cross_signing
from bot.matrix import requests
from bot.matrix.homeserver import HomeserverJson

logger = logging.getLogger(__name__)


class CrossSigningError(Exception):
    """Cross-signing could not be completed; the message tells an operator what to do."""


@dataclass(frozen=True)
class CrossSigningOutcome:
    """What `ensure_cross_signed` did, for logs and tests."""

    master_public: str
    self_signing_public: str
    plan: OwnPlan


async def query_keys(api: HomeserverJson, user_ids: list[str]) -> Json:
    status, body = await api.request_json(*requests.keys_query(user_ids))
    if status != 200:
        raise CrossSigningError(f"the homeserver refused to list keys (HTTP {status})")
    return body


async def upload_cross_signing_keys(
    api: HomeserverJson, user_id: str, keys: CrossSigningKeys, password: str | None
) -> None:
    """Publish the three keys, answering the user-interactive password challenge if asked.

    Synapse lets an account publish its first keys without a password; replacing them needs
    one. The body (which then holds the password) is never logged.
    """
    body = device_signing_upload_body(user_id, keys)
    status, answer = await api.request_json(*requests.device_signing_upload(body))
    if status == 401 and "session" in answer:
        flows = [f.get("stages", []) for f in answer.get("flows", []) if isinstance(f, dict)]
        if ["m.login.password"] not in flows:
            raise CrossSigningError(
                "the homeserver wants an authentication other than the password to replace "
                "the cross-signing keys; replace them from a client, or reset the account"
            )
        if not password:
            raise CrossSigningError(
                "the homeserver asks for the account password to replace the cross-signing "
                "keys: set `password` or `password_file` in the bot configuration"
            )
        body["auth"] = {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": user_id},
            "password": password,
            "session": answer["session"],
        }
        status, answer = await api.request_json(*requests.device_signing_upload(body))
    if status != 200:
        raise CrossSigningError(
            "the homeserver refused the cross-signing keys "
            f"(HTTP {status} {answer.get('errcode', '')}: {answer.get('error', '')})"
        )


async def sign_own_device(
    api: HomeserverJson, user_id: str, device_json: Json, keys: CrossSigningKeys
) -> None:
    body = device_signature_upload_body(user_id, device_json, keys.self_signing)
    status, answer = await api.request_json(*requests.signatures_upload(body))
    failures = answer.get("failures") or {}
    if status != 200 or failures:
        raise CrossSigningError(
            f"the homeserver refused our device signature (HTTP {status}, failures: "
            f"{json.dumps(failures, sort_keys=True)[:500]})"
        )


async def ensure_cross_signed(
    api: HomeserverJson,
    user_id: str,
    device_id: str,
    key_file: Path,
    password: str | None,
    *,
    replace_foreign: bool = True,
) -> CrossSigningOutcome:
    """Make our device cross-signed by our own identity; does nothing when it already is.

    Args:
        key_file: where the private keys live (0600). Missing means first start or lost keys.
        password: the account password, needed only to replace keys already published.
        replace_foreign: what to do when the server holds a master key that is not ours
            (identity reset from another client, or our key file lost). True (the default):
            publish our own identity, because without it the bot is deaf to Element; peers
            see "the bot's identity changed" once. False: refuse to start.
    """
    local = load_cross_signing_keys(key_file)
    before = await query_keys(api, [user_id])
    plan = plan_own_cross_signing(
        user_id,
        device_id,
        before,
        local.master.public_b64 if local else None,
        local.self_signing.public_b64 if local else None,
    )
    if plan.foreign_master is not None:
        if not replace_foreign:
            raise CrossSigningError(
                f"{user_id} already has a cross-signing identity (master key "
                f"{plan.foreign_master}) that is not the one in {key_file}; restore that file, "
                "or allow replacing it (cross_signing.replace_foreign_identity: true)"
            )
        logger.warning(
            "Replacing the cross-signing identity of %s (master key %s on the server is not "
            "ours: reset from another client, or our key file was lost); doctors' clients "
            "will show once that the bot's identity changed",
            user_id,
            plan.foreign_master,
        )
    if not plan.device_published:
        raise CrossSigningError(
            f"device {device_id} has not published its keys yet; upload device keys first"
        )
    keys = local
    if plan.generate or keys is None:
        keys = CrossSigningKeys.generate()
        save_cross_signing_keys(key_file, keys)
        logger.info("Created cross-signing keys for %s in %s", user_id, key_file)
    if plan.upload:
        await upload_cross_signing_keys(api, user_id, keys, password)
        logger.info("Published cross-signing keys of %s", user_id)
    if plan.upload or plan.sign_device:
        device_json = before["device_keys"][user_id][device_id]
        await sign_own_device(api, user_id, device_json, keys)
        after = await query_keys(api, [user_id])
        signed = after.get("device_keys", {}).get(user_id, {}).get(device_id)
        if not device_signed_by(user_id, signed, keys.self_signing.public_b64):
            raise CrossSigningError(
                f"the homeserver accepted but does not show the signature of device {device_id}"
            )
        logger.info("Device %s of %s is now cross-signed", device_id, user_id)
    else:
        logger.info("Device %s of %s was already cross-signed", device_id, user_id)
    return CrossSigningOutcome(keys.master.public_b64, keys.self_signing.public_b64, plan)
