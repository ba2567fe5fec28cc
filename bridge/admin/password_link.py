"""A new one-time link where a practitioner with an account chooses a password.

Who needs it: a practitioner whose account was opened by a Pro Santé Connect sign-in has no
password, and Element X (iOS, Android) cannot sign in with single sign-on. Until the homeserver
delegates sign-in to Matrix Authentication Service, the admin gives them this link; they choose
a password on the same activation page as an onboarded practitioner, and sign in to Element X
with it. It also replaces a lost or expired activation link of an onboarded practitioner.

Only an account linked to a practitioner of the directory gets one (not the bot's, not an
admin's), and not a locked or offboarded one. Issuing a link revokes the account's earlier
unused links; the link itself is shown once and never stored (only its hash) or logged.
Choosing the password through it keeps the account's sessions when it was already in use (its
owner adds a password; signing out their Element Web session would cost them their keys), and
the audit log records both steps.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

from bridge.admin import accounts, audit, directory
from bridge.admin.handlers import HOMESERVER_ERRORS, homeserver_error
from bridge.admin.model import Actor, AdminError, MatrixId
from bridge.admin.services import AdminServices, server_of
from bridge.directory.model import RppsId

ACTION = "password_link"


@dataclass(frozen=True, slots=True)
class PasswordLink:
    matrix_id: MatrixId
    rpps: RppsId
    activation_url: str
    """One-time link; never stored, never logged."""
    expires_at: datetime


async def password_link(services: AdminServices, actor: Actor, matrix_id: str) -> PasswordLink:
    """Issue a fresh activation link for a practitioner's existing account.

    Raises:
        AdminError: not a practitioner's account (not_found), locked or offboarded
            (conflict), homeserver unreachable (unavailable).
    """
    target = MatrixId(matrix_id.strip())
    server = server_of(target)
    client = services.client_for(target)
    async with services.db.sessions() as session:
        rpps = await directory.link_of_matrix_id(session, target)
    if rpps is None:
        raise AdminError(
            "not_found", f"{target} is not a practitioner's account (no RPPS is linked to it)"
        )
    try:
        details = await client.get_user(target)
    except HOMESERVER_ERRORS as exc:
        raise homeserver_error(server, exc) from None
    if details is None:
        raise AdminError("not_found", f"{target} does not exist on {server}")
    if details.get("deactivated"):
        raise AdminError("conflict", f"{target} is deactivated (offboarded)")
    if details.get("locked"):
        raise AdminError("conflict", f"{target} is locked: unlock it first")
    secret = secrets.token_urlsafe(32)
    now = services.now()
    expires_at = now + services.activation_ttl
    async with services.db.sessions.begin() as session:
        await accounts.revoke_activations(session, target)
        await accounts.add_activation(session, target, secret, at=now, expires_at=expires_at)
        await audit.record(session, at=now, actor=actor, action=ACTION, target=target, rpps=rpps)
    return PasswordLink(target, rpps, services.activation_url(secret), expires_at)
