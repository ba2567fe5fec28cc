"""The latest report of each bot, and one audit line per reset that appears or ends.

Each report replaces the bot's list in the same transaction as its audit lines: the console
never shows a reset the audit log does not have.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from bridge.admin import audit
from bridge.identity_resets import tables
from bridge.identity_resets.model import Changes, PendingReset, Report, changes

PENDING_ACTION = "identity_reset_pending"
ENDED_ACTION = "identity_reset_resolved"


@dataclass(frozen=True, slots=True)
class BotReport:
    """What one bot last said, for the console."""

    reporter: str
    """The name of the service token it presented."""
    bot_user_id: str
    reported_at: datetime
    pending: tuple[PendingReset, ...]
    """Oldest first."""


def _aware(value: datetime) -> datetime:
    """SQLite hands datetimes back without their zone; they were written in UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _reset(row: sa.Row[tuple[object, ...]]) -> PendingReset:
    return PendingReset(
        user_id=row.user_id,
        since=_aware(row.since),
        master_key=row.master_key,
        pinned_master_key=row.pinned_master_key,
    )


async def _kept(session: AsyncSession, reporter: str) -> dict[str, PendingReset]:
    rows = await session.execute(
        sa.select(tables.pending).where(tables.pending.c.reporter == reporter)
    )
    return {row.user_id: _reset(row) for row in rows}


async def save_report(
    session: AsyncSession, reporter: str, report: Report, *, now: datetime
) -> Changes:
    """Keep `report` as `reporter`'s list, auditing what changed (the caller commits)."""
    found = changes(await _kept(session, reporter), report)
    await session.execute(sa.delete(tables.pending).where(tables.pending.c.reporter == reporter))
    if report.pending:
        await session.execute(
            sa.insert(tables.pending),
            [
                {
                    "reporter": reporter,
                    "user_id": p.user_id,
                    "since": p.since,
                    "master_key": p.master_key,
                    "pinned_master_key": p.pinned_master_key,
                }
                for p in report.pending
            ],
        )
    await session.execute(sa.delete(tables.report).where(tables.report.c.reporter == reporter))
    await session.execute(
        sa.insert(tables.report).values(reporter=reporter, bot_user_id=report.bot, reported_at=now)
    )
    for p in found.appeared:
        await audit.record(
            session,
            at=now,
            actor=report.bot,
            action=PENDING_ACTION,
            target=p.user_id,
            since=p.since.strftime("%Y-%m-%d %H:%M:%S UTC"),
            new_master_key=p.master_key,
        )
    for user_id, outcome in found.ended:
        await audit.record(
            session, at=now, actor=report.bot, action=ENDED_ACTION, target=user_id, how=outcome
        )
    return found


async def latest_reports(session: AsyncSession) -> list[BotReport]:
    """Every bot's latest report, with its pending resets oldest first."""
    reports = (await session.execute(sa.select(tables.report).order_by("reporter"))).all()
    rows = await session.execute(
        sa.select(tables.pending).order_by(tables.pending.c.since, tables.pending.c.user_id)
    )
    by_reporter: dict[str, list[PendingReset]] = {}
    for row in rows:
        by_reporter.setdefault(row.reporter, []).append(_reset(row))
    return [
        BotReport(
            reporter=r.reporter,
            bot_user_id=r.bot_user_id,
            reported_at=_aware(r.reported_at),
            pending=tuple(by_reporter.get(r.reporter, ())),
        )
        for r in reports
    ]
