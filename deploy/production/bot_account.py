"""The bot's account, created once and exempted from Synapse's per-account rate limits.

`caducee deploy bot-account` (the compose one-shot `bot-account` service, and the bot's
systemd unit before it starts) makes sure that:

- the bot's account exists, as an ordinary account (never a server admin: its daily work
  needs no admin right), with the password of its rendered configuration;
- Synapse's per-user override lifts every limit Synapse keys on the bot's account (messages,
  redactions, joins, invitations it sends, room creation): the bot answers every doctor of
  the homeserver, where the defaults are sized for one person (one join per 10 s, one event
  per 5 s sustained).

Setting the override needs a server admin's token. The step signs in as `caducee-setup`, a
server admin whose password derives from the homeserver's registration shared secret (which
already allows creating admins, so nothing is exposed that was not), registered with that
secret the first time; its session is ended at the end of the step. Running the step again
changes nothing: it says what it found.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from bridge.synapse_admin import Session, SynapseAdmin, SynapseAdminError

SETUP_LOCALPART = "caducee-setup"
NO_LIMIT = {"messages_per_second": 0, "burst_count": 0}


class BotAccountError(Exception):
    """The step cannot run or failed; the message is meant for the operator."""


@dataclass(frozen=True)
class BotAccountPlan:
    """What the step needs, read from the rendered files (`bot_account` of deployment.yaml)."""

    synapse_url: str
    """Synapse's main process, client listener, internal network (the admin API is there)."""
    shared_secret: str
    bot_user_id: str
    bot_password: str


@dataclass(frozen=True)
class BotAccountReport:
    created: bool
    exempted: bool
    """False when the override was already in place."""


def setup_password(shared_secret: str) -> str:
    """The setup admin's password: only whoever holds the registration secret can derive it."""
    return hmac.new(
        shared_secret.encode(), b"caducee-setup admin password", hashlib.sha256
    ).hexdigest()


def _read_yaml(path: Path, what: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BotAccountError(f"{path}: no such file ({what}; `caducee deploy render`)") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise BotAccountError(f"{path}: cannot read {what}: {exc}") from None
    if not isinstance(data, dict):
        raise BotAccountError(f"{path}: {what} is not a mapping")
    return data


def load_plan(manifest: Path) -> BotAccountPlan:
    """Read the `bot_account` section of `deployment.yaml` and the two files it names."""
    section = _read_yaml(manifest, "the deployment manifest").get("bot_account")
    if not isinstance(section, dict) or not all(
        isinstance(section.get(k), str) and section[k]
        for k in ("synapse_url", "homeserver_config", "bot_config")
    ):
        raise BotAccountError(
            f"{manifest}: no 'bot_account' section: render it again with `caducee deploy render`"
        )
    homeserver = _read_yaml(Path(section["homeserver_config"]), "Synapse's configuration")
    bot = _read_yaml(Path(section["bot_config"]), "the bot's configuration")
    secret = homeserver.get("registration_shared_secret")
    if not isinstance(secret, str) or not secret:
        raise BotAccountError(
            f"{section['homeserver_config']}: no registration_shared_secret to create accounts"
        )
    user_id, password = bot.get("user_id"), bot.get("password")
    if not isinstance(user_id, str) or not isinstance(password, str) or not password:
        raise BotAccountError(f"{section['bot_config']}: needs the bot's user_id and password")
    return BotAccountPlan(section["synapse_url"], secret, user_id, password)


async def _setup_session(synapse: SynapseAdmin, shared_secret: str) -> Session:
    password = setup_password(shared_secret)
    try:
        return await synapse.register(shared_secret, SETUP_LOCALPART, password, admin=True)
    except SynapseAdminError as exc:
        if exc.errcode != "M_USER_IN_USE":
            raise
    try:
        return await synapse.login(SETUP_LOCALPART, password)
    except SynapseAdminError as exc:
        if exc.errcode == "M_FORBIDDEN":
            raise BotAccountError(
                f"the setup admin @{SETUP_LOCALPART} exists but does not take the password "
                "derived from this registration_shared_secret (was the secret changed?): "
                "reset its password with Synapse's admin API, or lift the bot's rate limits by "
                "hand (deploy/README.md)"
            ) from None
        raise


async def ensure_bot_account(http: aiohttp.ClientSession, plan: BotAccountPlan) -> BotAccountReport:
    """Create the bot's account if missing and set its rate-limit override (idempotent)."""
    synapse = SynapseAdmin(http, plan.synapse_url)
    session = await _setup_session(synapse, plan.shared_secret)
    try:
        admin = SynapseAdmin(http, plan.synapse_url, session.access_token)
        existing = await admin.get_user(plan.bot_user_id)
        if existing is not None and existing.get("deactivated"):
            raise BotAccountError(f"the bot's account {plan.bot_user_id} is deactivated")
        if existing is not None and existing.get("admin"):
            raise BotAccountError(
                f"the bot's account {plan.bot_user_id} is a server admin: it needs no admin "
                "right (remove it with Synapse's admin API) and admins skip the guard's checks"
            )
        created = existing is None
        if created:
            await admin.put_user(
                plan.bot_user_id,
                {"password": plan.bot_password, "displayname": "Caducée", "admin": False},
            )
        exempted = await admin.rate_limit_override(plan.bot_user_id) != NO_LIMIT
        if exempted:
            await admin.exempt_from_rate_limits(plan.bot_user_id)
        return BotAccountReport(created=created, exempted=exempted)
    finally:
        await synapse.logout(session.access_token)
