"""Federation registry: member organisations, their homeservers, peer federations, manifest state.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "registry_member",
        sa.Column("id", sa.Integer(), nullable=False, autoincrement=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_registry_member"),
        sa.UniqueConstraint("name", name="uq_registry_member_name"),
    )
    op.create_table(
        "registry_homeserver",
        sa.Column("server_name", sa.String(255), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("server_name", name="pk_registry_homeserver"),
        sa.ForeignKeyConstraint(
            ["member_id"],
            ["registry_member.id"],
            name="fk_registry_homeserver_member_id_registry_member",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_registry_homeserver_member_id", "registry_homeserver", ["member_id"])
    op.create_table(
        "registry_peer",
        sa.Column("url", sa.String(500), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        # The last manifest accepted from the peer (kept when later ones are refused).
        sa.Column("name", sa.String(200), nullable=True),
        sa.Column("version", sa.Integer(), nullable=True),
        sa.Column("homeservers", sa.Text(), nullable=True),
        sa.Column("verified_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        # The last attempt, successful or not.
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("problem", sa.String(500), nullable=True),
        sa.PrimaryKeyConstraint("url", name="pk_registry_peer"),
    )
    op.create_table(
        "registry_state",
        # One row: the published manifest's version and the digest of the content it had.
        sa.Column("id", sa.Integer(), nullable=False, autoincrement=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("content_digest", sa.String(64), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_registry_state"),
    )


def downgrade() -> None:
    op.drop_table("registry_state")
    op.drop_table("registry_peer")
    op.drop_index("ix_registry_homeserver_member_id", table_name="registry_homeserver")
    op.drop_table("registry_homeserver")
    op.drop_table("registry_member")
