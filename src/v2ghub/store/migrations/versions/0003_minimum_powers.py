"""A vehicle's least charging and discharging power (2.1 ``minChargePower``,
``minDischargePower``) kept with its needs.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("ev_needs", sa.Column("min_charge_kw", sa.Float(), nullable=True))
    op.add_column("ev_needs", sa.Column("min_discharge_kw", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("ev_needs") as batch:
        batch.drop_column("min_discharge_kw")
        batch.drop_column("min_charge_kw")
