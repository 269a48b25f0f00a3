"""Grid services live: regulation commitments, the signal as received, what each EVSE was
told to follow, and demand-response baselines.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "regulation_commitments",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("capacity_kw", sa.Float(), nullable=False),
        sa.Column("source", sa.String(length=96), nullable=False),
        sa.Column("external_id", sa.String(length=128), nullable=True),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancelled_by", sa.String(length=96), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_regulation_commitments"),
    )
    op.create_index("ix_regulation_commitments_starts_at", "regulation_commitments", ["starts_at"])
    op.create_table(
        "regulation_signals",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("signal", sa.Float(), nullable=False),
        sa.Column("source", sa.String(length=96), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_regulation_signals"),
    )
    op.create_index("ix_regulation_signals_at", "regulation_signals", ["at"])
    op.create_table(
        "regulation_shares",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("commitment_id", sa.Integer(), nullable=True),
        sa.Column("mode", sa.String(length=32), nullable=False),
        sa.Column("station_id", sa.String(length=48), nullable=False),
        sa.Column("evse_id", sa.Integer(), nullable=False),
        sa.Column("transaction_id", sa.String(length=36), nullable=False),
        sa.Column("from_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("baseline_kw", sa.Float(), nullable=False),
        sa.Column("raise_share_kw", sa.Float(), nullable=False),
        sa.Column("lower_share_kw", sa.Float(), nullable=False),
        sa.Column("status", sa.String(length=255), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_regulation_shares"),
    )
    op.create_index(
        "ix_regulation_shares_commitment_id_from_at",
        "regulation_shares",
        ["commitment_id", "from_at"],
    )
    op.create_index("ix_regulation_shares_from_at", "regulation_shares", ["from_at"])
    op.create_table(
        "grid_event_baselines",
        sa.Column("event_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("site_id", sa.String(length=64), nullable=False),
        sa.Column("baseline_kw", sa.Float(), nullable=False),
        sa.Column("step_s", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("event_id", "at", name="pk_grid_event_baselines"),
    )


def downgrade() -> None:
    op.drop_table("grid_event_baselines")
    op.drop_index("ix_regulation_shares_from_at", table_name="regulation_shares")
    op.drop_index("ix_regulation_shares_commitment_id_from_at", table_name="regulation_shares")
    op.drop_table("regulation_shares")
    op.drop_index("ix_regulation_signals_at", table_name="regulation_signals")
    op.drop_table("regulation_signals")
    op.drop_index("ix_regulation_commitments_starts_at", table_name="regulation_commitments")
    op.drop_table("regulation_commitments")
