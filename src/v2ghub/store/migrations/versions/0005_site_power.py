"""Power per site at each control instant (the web API's history), and the indexes the
API's session reads use (sessions by end and by id token).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "site_power",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("site_id", sa.String(length=64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("measured_kw", sa.Float(), nullable=True),
        sa.Column("planned_kw", sa.Float(), nullable=False),
        sa.Column("import_limit_kw", sa.Float(), nullable=True),
        sa.Column("export_limit_kw", sa.Float(), nullable=True),
        sa.Column("plugged", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_site_power"),
    )
    op.create_index("ix_site_power_site_id_at", "site_power", ["site_id", "at"])
    op.create_index("ix_site_power_at", "site_power", ["at"])
    op.create_index("ix_sessions_ended_at", "sessions", ["ended_at"])
    op.create_index("ix_sessions_id_token", "sessions", ["id_token"])


def downgrade() -> None:
    op.drop_index("ix_sessions_id_token", table_name="sessions")
    op.drop_index("ix_sessions_ended_at", table_name="sessions")
    op.drop_table("site_power")
