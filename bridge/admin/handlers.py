"""Onboarding, offboarding, locking, activation: the handlers behind the CLI and the console.

Each handler takes `AdminServices`, the actor (who is asking, for the audit log) and plain
arguments, talks to the homeserver through its admin API, then records the outcome, the
directory link and the audit entry in ONE database transaction. Homeserver first, database
second: if the homeserver refuses, nothing is recorded; if the database fails after an account
was created, the account is deactivated again rather than left orphaned.

Errors are `AdminError`s with a message for the admin; tokens and passwords never appear in
them, in logs or in the audit log.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Collection
from contextlib import suppress

import aiohttp
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from bridge.admin import accounts, audit, directory
from bridge.admin.localpart import base_localpart, candidates, user_id
from bridge.admin.model import (
    AccountState,
    Actor,
    AdminError,
    MatrixId,
    Offboarded,
    Onboarded,
    Practitioner,
)
from bridge.admin.services import AdminServices, aware, server_of
from bridge.directory.model import RppsId
from bridge.synapse_admin import SynapseAdmin, SynapseAdminError

logger = logging.getLogger(__name__)

RPPS_PATTERN = re.compile(r"^(?:\d{11}|[0-9A-Z]{9})$")
MIN_PASSWORD = 12
MAX_PASSWORD = 512


HOMESERVER_ERRORS = (SynapseAdminError, aiohttp.ClientError, TimeoutError)
"""What a homeserver call may raise: a refusal, or no answer at all."""


def homeserver_error(server: str, exc: Exception) -> AdminError:
    if isinstance(exc, SynapseAdminError):
        return AdminError(
            "unavailable", f"the homeserver {server} refused: {exc.errcode} {exc.message}"
        )
    return AdminError("unavailable", f"cannot reach the homeserver {server} ({type(exc).__name__})")


def check_rpps(rpps: str) -> RppsId:
    rpps = rpps.strip()
    if not RPPS_PATTERN.match(rpps):
        raise AdminError("invalid", f"{rpps!r} is not an RPPS (11 digits) or ADELI (9) number")
    return RppsId(rpps)


async def prepare_onboarding(
    services: AdminServices, rpps: str, server_name: str | None
) -> tuple[Practitioner, str, SynapseAdmin]:
    """Check an onboarding without changing anything: the practitioner, the server, its client."""
    checked = check_rpps(rpps)
    server, client = services.homeserver(server_name)
    async with services.db.sessions() as session:
        found = await directory.practitioner(session, checked)
        if found is None:
            raise AdminError(
                "not_found", f"RPPS {checked} is not in the directory (is the register imported?)"
            )
        linked = await directory.link_of_rpps(session, checked)
    if linked is not None:
        raise AdminError("conflict", f"RPPS {checked} is already onboarded as {linked}")
    return found, server, client


async def free_user_id(
    client: SynapseAdmin,
    server: str,
    practitioner: Practitioner,
    *,
    exclude: Collection[str] = (),
) -> MatrixId:
    """The first free ID among `first.last`, `first.last2`, ... on `server` (not in `exclude`)."""
    base = base_localpart(practitioner.first_name, practitioner.last_name)
    try:
        for localpart in candidates(base):
            candidate = user_id(localpart, server)
            if candidate not in exclude and await client.get_user(candidate) is None:
                return MatrixId(candidate)
    except HOMESERVER_ERRORS as exc:
        raise homeserver_error(server, exc) from None
    raise AdminError("conflict", f"no free Matrix ID for {base} on {server}")


async def onboard(
    services: AdminServices,
    actor: Actor,
    rpps: str,
    *,
    server_name: str | None = None,
    visible: bool = False,
) -> Onboarded:
    """Open an account for a practitioner of the directory and link it to their RPPS number."""
    practitioner, server, client = await prepare_onboarding(services, rpps, server_name)
    async with services.creating:
        matrix_id = await free_user_id(client, server, practitioner)
        try:
            created = await client.create_user(matrix_id, displayname=practitioner.display_name)
        except HOMESERVER_ERRORS as exc:
            raise homeserver_error(server, exc) from None
        if not created:
            raise AdminError("conflict", f"{matrix_id} was created by someone else meanwhile")
    secret = secrets.token_urlsafe(32)
    now = services.now()
    expires_at = now + services.activation_ttl
    try:
        async with services.db.sessions.begin() as session:
            await directory.link(session, practitioner.rpps, matrix_id, visible=visible)
            await accounts.set_state(
                session,
                matrix_id,
                state="pending",
                at=now,
                server_name=server,
                rpps=practitioner.rpps,
            )
            await accounts.add_activation(session, matrix_id, secret, at=now, expires_at=expires_at)
            await audit.record(
                session,
                at=now,
                actor=actor,
                action="onboard",
                target=matrix_id,
                rpps=practitioner.rpps,
                homeserver=server,
                visible=visible,
            )
    except (SQLAlchemyError, OSError) as exc:
        logger.error(
            "onboarding %s: database write failed (%s); closing the new account",
            matrix_id,
            type(exc).__name__,
        )
        with suppress(*HOMESERVER_ERRORS):
            await client.deactivate(matrix_id, erase=True)
        if isinstance(exc, IntegrityError):
            raise AdminError(
                "conflict", f"RPPS {practitioner.rpps} was onboarded meanwhile"
            ) from None
        raise AdminError(
            "unavailable", "the bridge database failed; nothing was onboarded"
        ) from None
    logger.info("onboarded %s", matrix_id)
    return Onboarded(
        matrix_id=matrix_id,
        display_name=practitioner.display_name,
        rpps=practitioner.rpps,
        activation_url=services.activation_url(secret),
        expires_at=expires_at,
    )


async def offboard(services: AdminServices, actor: Actor, matrix_id: str) -> Offboarded:
    """Deactivate an account (it leaves every room, its profile is erased) and unlink it."""
    target = MatrixId(matrix_id.strip())
    server = server_of(target)
    client = services.client_for(target)
    try:
        details = await client.get_user(target)
        if details is None:
            raise AdminError("not_found", f"{target} does not exist on {server}")
        rooms = [] if details.get("deactivated") else await client.joined_rooms(target)
        if not details.get("deactivated"):
            if details.get("locked"):
                await client.set_locked(target, False)  # Synapse refuses locked+deactivated
            await client.deactivate(target, erase=True)
    except HOMESERVER_ERRORS as exc:
        raise homeserver_error(server, exc) from None
    now = services.now()
    async with services.db.sessions.begin() as session:
        rpps = await directory.unlink(session, target)
        await accounts.revoke_activations(session, target)
        await accounts.set_state(
            session, target, state="deactivated", at=now, server_name=server, rpps=rpps
        )
        await audit.record(
            session,
            at=now,
            actor=actor,
            action="offboard",
            target=target,
            rpps=rpps,
            rooms=len(rooms),
            already=bool(details.get("deactivated")),
        )
    return Offboarded(matrix_id=target, rpps=rpps, rooms=len(rooms))


async def set_locked(
    services: AdminServices, actor: Actor, matrix_id: str, *, locked: bool, reason: str = "admin"
) -> None:
    """Lock (reversibly: the account keeps its rooms and keys) or unlock an account."""
    target = MatrixId(matrix_id.strip())
    server = server_of(target)
    client = services.client_for(target)
    try:
        details = await client.get_user(target)
        if details is None:
            raise AdminError("not_found", f"{target} does not exist on {server}")
        if details.get("deactivated"):
            raise AdminError("conflict", f"{target} is deactivated (offboarded)")
        await client.set_locked(target, locked)
    except HOMESERVER_ERRORS as exc:
        raise homeserver_error(server, exc) from None
    now = services.now()
    async with services.db.sessions.begin() as session:
        rpps = await directory.link_of_matrix_id(session, target)
        previous = await accounts.get(session, target)
        state: AccountState = (
            "locked"
            if locked
            else ("pending" if previous is not None and previous.state == "pending" else "active")
        )
        await accounts.set_state(
            session, target, state=state, at=now, server_name=server, rpps=rpps
        )
        await audit.record(
            session,
            at=now,
            actor=actor,
            action="lock" if locked else "unlock",
            target=target,
            rpps=rpps,
            reason=reason,
        )


async def activation_account(services: AdminServices, secret: str) -> MatrixId:
    """The account an activation link is for; AdminError if unknown, used or expired."""
    async with services.db.sessions() as session:
        found = await accounts.find_activation(session, secret)
    invalid = AdminError(
        "not_found",
        "This activation link is not valid: it was already used, it expired, or it was "
        "mistyped. Ask your federation's admin for a new one.",
    )
    if found is None:
        raise invalid
    matrix_id, expires_at, used_at = found
    if used_at is not None or aware(expires_at) <= services.now():
        raise invalid
    return matrix_id


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise AdminError("invalid", f"Choose a password of at least {MIN_PASSWORD} characters.")
    if len(password) > MAX_PASSWORD:
        raise AdminError("invalid", f"A password has at most {MAX_PASSWORD} characters.")


async def activate(services: AdminServices, secret: str, password: str) -> MatrixId:
    """The practitioner chooses a password through their one-time link; the link is then spent.

    An account already in use (opened by a Pro Santé Connect sign-in, given a password link for
    Element X: bridge.admin.password_link) keeps its sessions: its owner adds a password, and
    signing out their other clients would cost them their encryption keys there."""
    check_password(password)
    matrix_id = await activation_account(services, secret)
    server = server_of(matrix_id)
    client = services.client_for(matrix_id)
    now = services.now()
    async with services.db.sessions.begin() as session:
        if not await accounts.use_activation(session, secret, at=now):
            raise AdminError("not_found", "This activation link was already used.")
        row = await accounts.get(session, matrix_id)
        in_use = row is not None and row.state == "active"
        try:
            await client.set_password(matrix_id, password, logout_devices=not in_use)
        except HOMESERVER_ERRORS as exc:
            raise homeserver_error(server, exc) from None
        await accounts.set_state(session, matrix_id, state="active", at=now, server_name=server)
        await audit.record(session, at=now, actor=matrix_id, action="activate", target=matrix_id)
    return matrix_id
