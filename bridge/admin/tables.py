"""The admin tables (schema defined by migration 0002_admin; these declarations only query them).

- `admin_audit`: every change an admin (or the register re-sync) made: who, what, when, on
  whom, and a few details. Never message content, never a token or a password.
- `admin_account`: the accounts this bridge opened, and where they stand
  (see `bridge.admin.model.AccountState`).
- `admin_activation`: one-time activation links; only a SHA-256 of each link's secret is kept.
- `admin_console_session`: console sign-ins; only a SHA-256 of each session cookie is kept.
"""

from __future__ import annotations

import sqlalchemy as sa

from bridge.db import metadata

audit = sa.Table(
    "admin_audit",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("actor", sa.String(255), nullable=False),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("target", sa.String(255), nullable=True),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("detail", sa.Text(), nullable=False),
)

account = sa.Table(
    "admin_account",
    metadata,
    sa.Column("matrix_id", sa.String(255), primary_key=True),
    sa.Column("rpps", sa.String(16), nullable=True),
    sa.Column("server_name", sa.String(255), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

activation = sa.Table(
    "admin_activation",
    metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("matrix_id", sa.String(255), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
)

console_session = sa.Table(
    "admin_console_session",
    metadata,
    sa.Column("id_hash", sa.String(64), primary_key=True),
    sa.Column("user_id", sa.String(255), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
)
