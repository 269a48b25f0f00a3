"""The web API: bearer tokens, who made a change (``events.actor``), and grid events with a
kind, a source, an external id and cancellation.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "api_tokens",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("site_ids", sa.Text(), nullable=False, server_default=""),
        sa.Column("owner_id", sa.String(255), nullable=True),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("name", name="pk_api_tokens"),
        sa.UniqueConstraint("token_hash", name="uq_api_tokens_token_hash"),
    )
    op.add_column("events", sa.Column("actor", sa.String(64), nullable=True))
    with op.batch_alter_table("site_limits") as batch:
        batch.add_column(sa.Column("kind", sa.String(32), nullable=False, server_default="limit"))
        batch.add_column(sa.Column("source", sa.String(96), nullable=False, server_default="cli"))
        batch.add_column(sa.Column("external_id", sa.String(128), nullable=True))
        batch.add_column(sa.Column("requested_reduction_kw", sa.Float(), nullable=True))
        batch.add_column(sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("cancelled_by", sa.String(96), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("site_limits") as batch:
        for name in (
            "cancelled_by",
            "cancelled_at",
            "requested_reduction_kw",
            "external_id",
            "source",
            "kind",
        ):
            batch.drop_column(name)
    with op.batch_alter_table("events") as batch:
        batch.drop_column("actor")
    op.drop_table("api_tokens")
