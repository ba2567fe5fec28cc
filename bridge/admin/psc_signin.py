"""Pro Santé Connect sign-in, bridge side: gather the facts, apply the admission rule, record.

Called by the homeserver's mapping provider (bridge.psc.provider) at every PSC sign-in. The
facts come from the directory (is the identifier in the current register, with which
professions), the directory link (an onboarded practitioner's account), the accounts table and
the homeserver itself (an account locked or deactivated there is refused even if the bridge
did not do it). The decision is `bridge.psc.admission.decide`, pure.

A practitioner admitted without an account gets one at once: the bridge picks a free Matrix ID
by the federation's rule (`first.last`, `first.last2`, ...), links it to the RPPS and records
the account and the audit entry in one transaction *before* answering; Synapse then creates the
account under that ID with the register's display name. If Synapse fails after that, the next
sign-in finds the link and lands on the same ID: never a duplicate.

Every sign-in and every refusal is audited (`psc_signin`, outcome ok/refused, reason, RPPS,
acr); no token reaches the bridge.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from bridge.admin import accounts, audit, directory, tables
from bridge.admin.handlers import HOMESERVER_ERRORS, free_user_id, homeserver_error
from bridge.admin.model import AdminError, MatrixId, Practitioner
from bridge.admin.services import AdminServices
from bridge.directory import store
from bridge.psc import admission
from bridge.psc.admission import Admitted, Facts, Refused
from bridge.psc.settings import PscSettings

logger = logging.getLogger(__name__)

ACTION = "psc_signin"
_IDENTIFIER_RE = re.compile(r"[0-9]{11}|[0-9A-Z]{9}")  # ASCII digits only


@dataclass(frozen=True, slots=True)
class AdmitRequest:
    identifier: str
    acr: str | None
    server_name: str

    @classmethod
    def parse(cls, body: Mapping[str, Any]) -> AdmitRequest:
        """Validate the module's request; AdminError('invalid') names the field at fault."""
        identifier = body.get("identifier")
        if not isinstance(identifier, str) or not _IDENTIFIER_RE.fullmatch(identifier):
            raise AdminError("invalid", "'identifier' must be an RPPS (11 digits) or ADELI (9)")
        acr = body.get("acr")
        if acr is not None and (not isinstance(acr, str) or len(acr) > 64):
            raise AdminError("invalid", "'acr' must be a short string or null")
        server_name = body.get("server_name")
        if not isinstance(server_name, str) or not 0 < len(server_name) <= 255:
            raise AdminError("invalid", "'server_name' must be the homeserver's name")
        return cls(identifier, acr, server_name)


async def _last_account_state(session: AsyncSession, rpps: str) -> admission.AccountState | None:
    table = tables.account
    state = await session.scalar(
        sa.select(table.c.state)
        .where(table.c.rpps == rpps)
        .order_by(table.c.updated_at.desc())
        .limit(1)
    )
    return None if state is None else state


async def _homeserver_state(
    services: AdminServices, matrix_id: MatrixId
) -> admission.AccountState | None:
    """What the homeserver says of an account (locked/deactivated there wins), if it manages it."""
    if matrix_id.partition(":")[2] not in services.homeservers:
        return None
    try:
        details = await services.client_for(matrix_id).get_user(matrix_id)
    except HOMESERVER_ERRORS as exc:
        raise homeserver_error(matrix_id.partition(":")[2], exc) from None
    if details is None:
        return None
    if details.get("deactivated"):
        return "deactivated"
    return "locked" if details.get("locked") else None


async def _facts(
    services: AdminServices, settings: PscSettings, request: AdmitRequest, opens: str
) -> tuple[Facts, Practitioner | None]:
    async with services.db.sessions() as session:
        records = await store.get_practitioner(session, request.identifier)
        practitioner = await directory.practitioner(session, request.identifier)
        linked = await directory.link_of_rpps(session, request.identifier)
        state = await _last_account_state(session, request.identifier)
        if linked is not None:
            row = await accounts.get(session, linked)
            state = row.state if row is not None else None
    if linked is not None:
        state = await _homeserver_state(services, linked) or state
    facts = Facts(
        identifier=request.identifier,
        acr=request.acr,
        in_register=bool(records),
        profession_codes=frozenset(r.profession_code for r in records),
        linked_matrix_id=linked,
        account_state=state if state in ("locked", "deactivated") else None,
        listed=request.identifier in settings.members,
        server_name=request.server_name,
        opens_accounts=request.server_name == opens,
    )
    return facts, practitioner


async def _record(
    services: AdminServices,
    request: AdmitRequest,
    *,
    target: str | None,
    outcome: audit.Outcome,
    **detail: audit.DetailValue,
) -> None:
    async with services.db.sessions.begin() as session:
        await audit.record(
            session,
            at=services.now(),
            actor=f"psc:{request.identifier}",
            action=ACTION,
            target=target,
            outcome=outcome,
            rpps=request.identifier,
            acr=request.acr,
            homeserver=request.server_name,
            **detail,
        )


async def _open_account(
    services: AdminServices, request: AdmitRequest, practitioner: Practitioner
) -> tuple[MatrixId, bool]:
    """Choose a free ID and link it, with the account row and the audit entry, in one go;
    (the ID, True), or (the ID, False) when a simultaneous sign-in linked one first."""
    server, client = services.homeserver(request.server_name)
    async with services.creating:
        async with services.db.sessions() as session:  # a sign-in a moment ago may have won
            linked = await directory.link_of_rpps(session, practitioner.rpps)
        if linked is not None:
            return linked, False
        matrix_id = await free_user_id(client, server, practitioner)
        now = services.now()
        async with services.db.sessions.begin() as session:
            await directory.link(session, practitioner.rpps, matrix_id, visible=False)
            await accounts.set_state(
                session,
                matrix_id,
                state="active",
                at=now,
                server_name=server,
                rpps=practitioner.rpps,
            )
            await audit.record(
                session,
                at=now,
                actor=f"psc:{request.identifier}",
                action=ACTION,
                target=matrix_id,
                rpps=request.identifier,
                acr=request.acr,
                homeserver=server,
                new_account=True,
            )
    logger.info("PSC sign-in opened %s", matrix_id)
    return matrix_id, True


async def admit(
    services: AdminServices, settings: PscSettings, request: AdmitRequest
) -> dict[str, Any]:
    """The answer for the mapping provider: admit (with the localpart) or refuse (with why)."""
    opens = settings.homeserver or services.default_server
    facts, practitioner = await _facts(services, settings, request, opens)
    decision = admission.decide(facts, settings.admission, settings.professions)
    if isinstance(decision, Refused):
        await _record(
            services,
            request,
            target=facts.linked_matrix_id,
            outcome="refused",
            reason=decision.reason,
        )
        logger.info("PSC sign-in refused (%s)", decision.reason)
        return {
            "decision": "refuse",
            "reason": decision.reason,
            "message": decision.message,
            "message_fr": decision.message_fr,
            "message_en": decision.message_en,
        }
    assert isinstance(decision, Admitted)
    assert practitioner is not None  # admitted implies in the register
    created = False
    if decision.matrix_id is not None:
        matrix_id = MatrixId(decision.matrix_id)
    else:
        matrix_id, created = await _open_account(services, request, practitioner)
    if not created:
        await _record(services, request, target=matrix_id, outcome="ok", new_account=False)
    return {
        "decision": "admit",
        "matrix_id": matrix_id,
        "localpart": matrix_id.removeprefix("@").partition(":")[0],
        "display_name": practitioner.display_name,
        "new_account": created,
    }
