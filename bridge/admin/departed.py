"""Practitioners who left the register: lock their accounts, list them for the admin.

A re-import of the register reports who disappeared (struck off, retired, deceased). Their
accounts are LOCKED, not deactivated: a locked account keeps its rooms and keys, and a
practitioner missing by a register error is unlocked in one action. Deactivation (offboarding)
stays a decision of the admin, who sees the list here, in `caducee admin lock-departed` and in
the console. Nothing is deleted silently.

The same safety valve as the import (bridge.directory.generations.check_shrink): locking more
than 5 % of the onboarded practitioners' accounts at once (a cut register forced through) is
refused with the figures unless the admin confirms (`--allow-shrink`, or the console's
confirmation). One account is always allowed, however small the deployment.
"""

from __future__ import annotations

import logging

import sqlalchemy as sa

from bridge.admin import accounts, audit, directory
from bridge.admin.handlers import HOMESERVER_ERRORS, homeserver_error
from bridge.admin.model import AccountState, Actor, AdminError, Departed
from bridge.admin.services import AdminServices, server_of
from bridge.directory.generations import DEFAULT_MAX_SHRINK

logger = logging.getLogger(__name__)
REASON = "left the register"


async def list_departed(services: AdminServices) -> list[Departed]:
    """Who left the register and where their accounts stand (no change made)."""
    async with services.db.sessions() as session:
        found = await directory.departed_links(session)
        states = {link.matrix_id: await accounts.get(session, link.matrix_id) for link, _ in found}
    result = []
    for link, name in found:
        row = states[link.matrix_id]
        state = row.state if row is not None else "unknown"
        result.append(Departed(link.rpps, link.matrix_id, name, state, locked_now=False))
    return result


def check_lock_share(to_lock: int, linked: int, max_share: float | None) -> None:
    """Refuse to lock more than `max_share` of the `linked` accounts (None: any number).

    Raises:
        AdminError: "conflict", with the figures and how to confirm.
    """
    if max_share is None or to_lock <= max(1, int(linked * max_share)):
        return
    raise AdminError(
        "conflict",
        f"this would lock {to_lock:,} of the {linked:,} onboarded practitioners' accounts "
        f"({to_lock / max(linked, 1):.0%}, more than the {max_share:.0%} allowed): was the last "
        "register import a cut or wrong file? Check `caducee directory changes`, then confirm "
        "with --allow-shrink. Nothing was locked.",
    )


async def lock_departed(
    services: AdminServices, actor: Actor, *, max_share: float | None = DEFAULT_MAX_SHRINK
) -> list[Departed]:
    """Lock every account of a practitioner no longer in the register; return them all.

    An account that cannot be locked now (homeserver down, not managed here) is listed with
    its problem and tried again next time; the others are still locked.

    Raises:
        AdminError: more than `max_share` of the linked accounts would be locked (nothing is).
    """
    result: list[Departed] = []
    departed = await list_departed(services)
    to_lock = sum(1 for item in departed if item.state not in ("locked", "deactivated"))
    if to_lock:
        async with services.db.sessions() as session:
            linked = int(await session.scalar(sa.text("SELECT count(*) FROM directory_link")) or 0)
        check_lock_share(to_lock, linked, max_share)
    for item in departed:
        if item.state in ("locked", "deactivated"):
            result.append(item)
            continue
        server = item.matrix_id.partition(":")[2]
        try:
            server = server_of(item.matrix_id)
            client = services.client_for(item.matrix_id)
            details = await client.get_user(item.matrix_id)
            state: AccountState
            if details is None:
                raise AdminError("not_found", f"the account no longer exists on {server}")
            if details.get("deactivated"):
                state = "deactivated"
            else:
                if not details.get("locked"):
                    await client.set_locked(item.matrix_id, True)
                state = "locked"
        except (AdminError, *HOMESERVER_ERRORS) as exc:
            error = exc if isinstance(exc, AdminError) else homeserver_error(server, exc)
            problem = error.message
            logger.warning("cannot lock %s (left the register): %s", item.matrix_id, problem)
            result.append(
                Departed(item.rpps, item.matrix_id, item.name, item.state, False, problem)
            )
            continue
        now = services.now()
        async with services.db.sessions.begin() as session:
            await accounts.set_state(
                session, item.matrix_id, state=state, at=now, server_name=server, rpps=item.rpps
            )
            if state == "locked":
                await audit.record(
                    session,
                    at=now,
                    actor=actor,
                    action="lock",
                    target=item.matrix_id,
                    rpps=item.rpps,
                    reason=REASON,
                )
        result.append(Departed(item.rpps, item.matrix_id, item.name, state, state == "locked"))
    return result
