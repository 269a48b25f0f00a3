"""OpenADR: price events per site, and the VEN's view of each VTN event.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "grid_prices",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("site_id", sa.String(length=64), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("import_price_cny_per_kwh", sa.Float(), nullable=False),
        sa.Column("source", sa.String(length=96), nullable=False),
        sa.Column("external_id", sa.String(length=128), nullable=True),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancelled_by", sa.String(length=96), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_grid_prices"),
    )
    op.create_index("ix_grid_prices_site_id_starts_at", "grid_prices", ["site_id", "starts_at"])
    op.create_table(
        "openadr_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("source", sa.String(length=96), nullable=False),
        sa.Column("vtn_event_id", sa.String(length=128), nullable=False),
        sa.Column("modification_number", sa.Integer(), nullable=False),
        sa.Column("signal_name", sa.String(length=64), nullable=False),
        sa.Column("site_ids", sa.Text(), server_default="", nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("opt_state", sa.String(length=16), nullable=False),
        sa.Column("opt_reason", sa.Text(), server_default="", nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_openadr_events"),
        sa.UniqueConstraint("source", "vtn_event_id", name="uq_openadr_events_source_vtn_event_id"),
    )


def downgrade() -> None:
    op.drop_table("openadr_events")
    op.drop_index("ix_grid_prices_site_id_starts_at", table_name="grid_prices")
    op.drop_table("grid_prices")
