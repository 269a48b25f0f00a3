"""The live aggregator's first tables: stations, EVSEs, sessions, their events and meter
values, vehicles' needs, setpoints sent and the event log.

Written by hand to match ``v2ghub.store.schema`` as of this revision (a test compares the
migrated database with the metadata). Times are ``DateTime(timezone=True)``: ``timestamptz``
on PostgreSQL; SQLite keeps UTC text.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATION_ID = sa.String(length=48)
TRANSACTION_ID = sa.String(length=36)


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "stations",
        sa.Column("station_id", STATION_ID, nullable=False),
        sa.Column("site_id", sa.String(length=64), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("v2x_allowed", sa.Boolean(), nullable=False),
        sa.Column("max_power_kw", sa.Float(), nullable=False),
        sa.Column("ocpp_version", sa.String(length=16), nullable=True),
        sa.Column("vendor", sa.String(length=64), nullable=True),
        sa.Column("model", sa.String(length=64), nullable=True),
        sa.Column("last_boot_at", _utc(), nullable=True),
        sa.Column("created_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("station_id", name="pk_stations"),
    )
    op.create_table(
        "evses",
        sa.Column("station_id", STATION_ID, nullable=False),
        sa.Column("evse_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("updated_at", _utc(), nullable=False),
        sa.ForeignKeyConstraint(
            ["station_id"], ["stations.station_id"], name="fk_evses_station_id_stations"
        ),
        sa.PrimaryKeyConstraint("station_id", "evse_id", name="pk_evses"),
    )
    op.create_table(
        "sessions",
        sa.Column("station_id", STATION_ID, nullable=False),
        sa.Column("transaction_id", TRANSACTION_ID, nullable=False),
        sa.Column("evse_id", sa.Integer(), nullable=False),
        sa.Column("id_token", sa.String(length=255), nullable=True),
        sa.Column("started_at", _utc(), nullable=False),
        sa.Column("ended_at", _utc(), nullable=True),
        sa.Column("stopped_reason", sa.String(length=64), nullable=True),
        sa.Column("last_seq_no", sa.Integer(), nullable=False),
        sa.Column("start_import_register_wh", sa.BigInteger(), nullable=True),
        sa.Column("start_export_register_wh", sa.BigInteger(), nullable=True),
        sa.Column("import_register_wh", sa.BigInteger(), nullable=True),
        sa.Column("export_register_wh", sa.BigInteger(), nullable=True),
        sa.Column("soc", sa.Float(), nullable=True),
        sa.Column("last_meter_at", _utc(), nullable=True),
        sa.ForeignKeyConstraint(
            ["station_id"], ["stations.station_id"], name="fk_sessions_station_id_stations"
        ),
        sa.PrimaryKeyConstraint("station_id", "transaction_id", name="pk_sessions"),
    )
    op.create_index(
        "ix_sessions_station_id_evse_id_ended_at",
        "sessions",
        ["station_id", "evse_id", "ended_at"],
    )
    op.create_table(
        "transaction_events",
        sa.Column("station_id", STATION_ID, nullable=False),
        sa.Column("transaction_id", TRANSACTION_ID, nullable=False),
        sa.Column("seq_no", sa.Integer(), nullable=False),
        sa.Column("event_type", sa.String(length=16), nullable=False),
        sa.Column("trigger_reason", sa.String(length=64), nullable=False),
        sa.Column("at", _utc(), nullable=False),
        sa.Column("offline", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["station_id", "transaction_id"],
            ["sessions.station_id", "sessions.transaction_id"],
            name="fk_transaction_events_station_id_transaction_id_sessions",
        ),
        sa.PrimaryKeyConstraint(
            "station_id", "transaction_id", "seq_no", name="pk_transaction_events"
        ),
    )
    op.create_table(
        "meter_values",
        sa.Column("station_id", STATION_ID, nullable=False),
        sa.Column("transaction_id", TRANSACTION_ID, nullable=False),
        sa.Column("seq_no", sa.Integer(), nullable=False),
        sa.Column("measured_at", _utc(), nullable=False),
        sa.Column("evse_id", sa.Integer(), nullable=False),
        sa.Column("import_register_wh", sa.BigInteger(), nullable=False),
        sa.Column("export_register_wh", sa.BigInteger(), nullable=False),
        sa.Column("power_kw", sa.Float(), nullable=True),
        sa.Column("soc", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["station_id"], ["stations.station_id"], name="fk_meter_values_station_id_stations"
        ),
        sa.PrimaryKeyConstraint(
            "station_id",
            "transaction_id",
            "seq_no",
            "measured_at",
            "evse_id",
            name="pk_meter_values",
        ),
    )
    op.create_table(
        "ev_needs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("station_id", STATION_ID, nullable=False),
        sa.Column("evse_id", sa.Integer(), nullable=False),
        sa.Column("received_at", _utc(), nullable=False),
        sa.Column("departure_at", _utc(), nullable=True),
        sa.Column("battery_kwh", sa.Float(), nullable=True),
        sa.Column("soc", sa.Float(), nullable=True),
        sa.Column("target_energy_kwh", sa.Float(), nullable=True),
        sa.Column("min_energy_kwh", sa.Float(), nullable=True),
        sa.Column("max_charge_kw", sa.Float(), nullable=True),
        sa.Column("max_discharge_kw", sa.Float(), nullable=True),
        sa.Column("control_mode", sa.String(length=32), nullable=True),
        sa.Column("transaction_id", TRANSACTION_ID, nullable=True),
        sa.Column("import_register_wh", sa.BigInteger(), nullable=True),
        sa.Column("export_register_wh", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["station_id"], ["stations.station_id"], name="fk_ev_needs_station_id_stations"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_ev_needs"),
    )
    op.create_index(
        "ix_ev_needs_station_id_evse_id_received_at",
        "ev_needs",
        ["station_id", "evse_id", "received_at"],
    )
    op.create_table(
        "setpoints",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("station_id", STATION_ID, nullable=False),
        sa.Column("evse_id", sa.Integer(), nullable=False),
        sa.Column("transaction_id", TRANSACTION_ID, nullable=True),
        sa.Column("sent_at", _utc(), nullable=False),
        sa.Column("setpoint_kw", sa.Float(), nullable=False),
        sa.Column("discharge_limit_kw", sa.Float(), nullable=False),
        sa.Column("planner", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=255), nullable=False),
        sa.Column("fallback_reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["station_id"], ["stations.station_id"], name="fk_setpoints_station_id_stations"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_setpoints"),
    )
    op.create_index(
        "ix_setpoints_station_id_evse_id_sent_at",
        "setpoints",
        ["station_id", "evse_id", "sent_at"],
    )
    op.create_table(
        "events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", _utc(), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("station_id", STATION_ID, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_events"),
    )
    op.create_index("ix_events_kind_at", "events", ["kind", "at"])


def downgrade() -> None:
    for table in (
        "events",
        "setpoints",
        "ev_needs",
        "meter_values",
        "transaction_events",
        "sessions",
        "evses",
        "stations",
    ):
        op.drop_table(table)
