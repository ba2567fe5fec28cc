"""Bulk onboarding from a file: check every line first, then onboard, or change nothing.

A dry run stops after the checks and says what would happen (the Matrix ID each practitioner
would get). A real run with any bad line also stops there: the admin fixes the file and runs
it again, rather than untangling a half-done batch. Once the checks pass, practitioners are
onboarded one by one; should a homeserver fail midway, the report says who was onboarded and
where it stopped (running the same file again then reports those as already onboarded).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bridge.admin import audit
from bridge.admin.bulk import BulkLine, LineError, parse_bulk
from bridge.admin.handlers import free_user_id, onboard, prepare_onboarding
from bridge.admin.model import Actor, AdminError, MatrixId, Onboarded
from bridge.admin.services import AdminServices


@dataclass(frozen=True, slots=True)
class PlannedLine:
    line: int
    rpps: str
    display_name: str
    matrix_id: MatrixId
    """The ID the practitioner would get if onboarded now."""


@dataclass
class BulkReport:
    dry_run: bool
    planned: list[PlannedLine] = field(default_factory=list)
    errors: list[LineError] = field(default_factory=list)
    onboarded: list[tuple[int, Onboarded]] = field(default_factory=list)
    stopped_at: LineError | None = None
    """The line where a real run stopped after some were onboarded."""

    @property
    def changed_nothing(self) -> bool:
        return not self.onboarded


async def _check(services: AdminServices, items: list[BulkLine]) -> BulkReport:
    report = BulkReport(dry_run=True)
    taken: set[str] = set()
    for item in items:
        try:
            practitioner, server, client = await prepare_onboarding(
                services, item.rpps, item.homeserver
            )
            # Homonyms in one file: the second one gets the next free number.
            matrix_id = await free_user_id(client, server, practitioner, exclude=taken)
        except AdminError as exc:
            report.errors.append(LineError(item.line, exc.message))
            continue
        taken.add(matrix_id)
        report.planned.append(
            PlannedLine(item.line, item.rpps, practitioner.display_name, matrix_id)
        )
    return report


async def onboard_file(
    services: AdminServices, actor: Actor, text: str, *, dry_run: bool, source: str = "file"
) -> BulkReport:
    items, errors = parse_bulk(text)
    if errors:
        return BulkReport(dry_run=dry_run, errors=errors)
    report = await _check(services, items)
    report.dry_run = dry_run
    if dry_run or report.errors:
        return report
    by_line = {item.line: item for item in items}
    for planned in report.planned:
        item = by_line[planned.line]
        try:
            done = await onboard(services, actor, item.rpps, server_name=item.homeserver)
        except AdminError as exc:
            report.stopped_at = LineError(planned.line, exc.message)
            break
        report.onboarded.append((planned.line, done))
    async with services.db.sessions.begin() as session:
        await audit.record(
            session,
            at=services.now(),
            actor=actor,
            action="onboard_file",
            target=None,
            outcome="ok" if report.stopped_at is None else "failed",
            file=source,
            practitioners=len(report.onboarded),
            lines=len(items),
        )
    return report
