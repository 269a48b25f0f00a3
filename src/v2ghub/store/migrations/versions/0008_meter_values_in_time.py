"""Meter values indexed by time: a reading is checked against its neighbours in time, a
transaction's among its own and an EVSE's outside any transaction among those.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-08
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OUTSIDE_A_TRANSACTION = "transaction_id = ''"


def upgrade() -> None:
    op.create_index(
        "ix_meter_values_station_id_transaction_id_measured_at",
        "meter_values",
        ["station_id", "transaction_id", "measured_at"],
    )
    op.create_index(
        "ix_meter_values_station_id_evse_id_measured_at",
        "meter_values",
        ["station_id", "evse_id", "measured_at"],
        sqlite_where=sa.text(OUTSIDE_A_TRANSACTION),
        postgresql_where=sa.text(OUTSIDE_A_TRANSACTION),
    )


def downgrade() -> None:
    op.drop_index("ix_meter_values_station_id_evse_id_measured_at", table_name="meter_values")
    op.drop_index(
        "ix_meter_values_station_id_transaction_id_measured_at", table_name="meter_values"
    )
