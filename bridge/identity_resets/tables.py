"""The tables of the bot's reports (schema defined by migration 0004).

- `identity_reset_report`: one row per reporting bot (by service token name): its Matrix ID
  and when it last reported, so the console can tell "none pending" from "never reported".
- `identity_reset`: the resets pending in each bot's latest report.
"""

from __future__ import annotations

import sqlalchemy as sa

from bridge.db import metadata

report = sa.Table(
    "identity_reset_report",
    metadata,
    sa.Column("reporter", sa.String(64), primary_key=True),
    sa.Column("bot_user_id", sa.String(255), nullable=False),
    sa.Column("reported_at", sa.DateTime(timezone=True), nullable=False),
)

pending = sa.Table(
    "identity_reset",
    metadata,
    sa.Column("reporter", sa.String(64), primary_key=True),
    sa.Column("user_id", sa.String(255), primary_key=True),
    sa.Column("since", sa.DateTime(timezone=True), nullable=False),
    sa.Column("master_key", sa.String(64), nullable=False),
    sa.Column("pinned_master_key", sa.String(64), nullable=False),
)
