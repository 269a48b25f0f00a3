"""The live aggregator's tables (SQLAlchemy Core).

Times are timezone-aware UTC on both back ends (:class:`UtcDateTime`); energy registers are
cumulative integer Wh (``BIGINT``: a busy meter passes 2**31 Wh); power is kW with the
project's sign (+ charging, - discharging); SoC is 0-1. The alembic migration ``0001``
creates exactly these tables, and a test compares the migrated database with them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
STATION_ID_LENGTH = 48
TRANSACTION_ID_LENGTH = 36
NO_TRANSACTION = ""
"""``meter_values.transaction_id`` of a MeterValues reading taken while no transaction ran."""
METER_VALUES_SEQ_NO = -1
"""``meter_values.seq_no`` of a reading from a MeterValues message (not a transaction event)."""


class UtcDateTime(sa.types.TypeDecorator[datetime]):
    """``DateTime(timezone=True)`` that refuses naive times and always returns aware UTC.

    SQLite keeps no offset, so times are converted to UTC before they are written and
    marked UTC when read back.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"time {value.isoformat()} has no timezone")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime from the database, got {value!r}")
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)

stations = sa.Table(
    "stations",
    metadata,
    sa.Column("station_id", sa.String(STATION_ID_LENGTH), primary_key=True),
    sa.Column("site_id", sa.String(64), nullable=False),
    sa.Column("password_hash", sa.String(255), nullable=False),
    sa.Column("v2x_allowed", sa.Boolean, nullable=False),
    sa.Column("max_power_kw", sa.Float, nullable=False),
    sa.Column("ocpp_version", sa.String(16)),
    sa.Column("vendor", sa.String(64)),
    sa.Column("model", sa.String(64)),
    sa.Column("last_boot_at", UtcDateTime),
    sa.Column("created_at", UtcDateTime, nullable=False),
)

evses = sa.Table(
    "evses",
    metadata,
    sa.Column("station_id", sa.ForeignKey("stations.station_id"), primary_key=True),
    sa.Column("evse_id", sa.Integer, primary_key=True),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
)

sessions = sa.Table(
    "sessions",
    metadata,
    sa.Column("station_id", sa.ForeignKey("stations.station_id"), primary_key=True),
    sa.Column("transaction_id", sa.String(TRANSACTION_ID_LENGTH), primary_key=True),
    sa.Column("evse_id", sa.Integer, nullable=False),
    sa.Column("id_token", sa.String(255)),
    sa.Column("started_at", UtcDateTime, nullable=False),
    sa.Column("ended_at", UtcDateTime),
    sa.Column("stopped_reason", sa.String(64)),
    sa.Column("last_seq_no", sa.Integer, nullable=False),
    sa.Column("start_import_register_wh", sa.BigInteger),
    sa.Column("start_export_register_wh", sa.BigInteger),
    sa.Column("import_register_wh", sa.BigInteger),
    sa.Column("export_register_wh", sa.BigInteger),
    sa.Column("soc", sa.Float),
    sa.Column("last_meter_at", UtcDateTime),
    sa.Index(None, "station_id", "evse_id", "ended_at"),
    sa.Index(None, "ended_at"),
    sa.Index(None, "id_token"),
)

transaction_events = sa.Table(
    "transaction_events",
    metadata,
    sa.Column("station_id", sa.String(STATION_ID_LENGTH), primary_key=True),
    sa.Column("transaction_id", sa.String(TRANSACTION_ID_LENGTH), primary_key=True),
    sa.Column("seq_no", sa.Integer, primary_key=True),
    sa.Column("event_type", sa.String(16), nullable=False),
    sa.Column("trigger_reason", sa.String(64), nullable=False),
    sa.Column("at", UtcDateTime, nullable=False),
    sa.Column("offline", sa.Boolean, nullable=False),
    sa.ForeignKeyConstraint(
        ["station_id", "transaction_id"], ["sessions.station_id", "sessions.transaction_id"]
    ),
)

meter_values = sa.Table(
    "meter_values",
    metadata,
    sa.Column("station_id", sa.ForeignKey("stations.station_id"), primary_key=True),
    sa.Column("transaction_id", sa.String(TRANSACTION_ID_LENGTH), primary_key=True),
    sa.Column("seq_no", sa.Integer, primary_key=True),
    sa.Column("measured_at", UtcDateTime, primary_key=True),
    # Part of the key only so that readings outside any transaction stay apart per EVSE.
    sa.Column("evse_id", sa.Integer, primary_key=True),
    sa.Column("import_register_wh", sa.BigInteger, nullable=False),
    sa.Column("export_register_wh", sa.BigInteger, nullable=False),
    sa.Column("power_kw", sa.Float),
    sa.Column("soc", sa.Float),
    # A reading is checked against its neighbours in time: a transaction's readings by
    # time, and an EVSE's readings outside any transaction by time (partial: only those).
    sa.Index(None, "station_id", "transaction_id", "measured_at"),
    sa.Index(
        None,
        "station_id",
        "evse_id",
        "measured_at",
        sqlite_where=sa.text(f"transaction_id = '{NO_TRANSACTION}'"),
        postgresql_where=sa.text(f"transaction_id = '{NO_TRANSACTION}'"),
    ),
)

ev_needs = sa.Table(
    "ev_needs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("station_id", sa.ForeignKey("stations.station_id"), nullable=False),
    sa.Column("evse_id", sa.Integer, nullable=False),
    sa.Column("received_at", UtcDateTime, nullable=False),
    sa.Column("departure_at", UtcDateTime),
    sa.Column("battery_kwh", sa.Float),
    sa.Column("soc", sa.Float),
    sa.Column("target_energy_kwh", sa.Float),
    sa.Column("min_energy_kwh", sa.Float),
    sa.Column("max_charge_kw", sa.Float),
    sa.Column("max_discharge_kw", sa.Float),
    sa.Column("control_mode", sa.String(32)),
    sa.Column("transaction_id", sa.String(TRANSACTION_ID_LENGTH)),
    # The EVSE's registers when the needs arrived: energy metered since then moves the
    # needs' SoC forward.
    sa.Column("import_register_wh", sa.BigInteger),
    sa.Column("export_register_wh", sa.BigInteger),
    sa.Column("min_charge_kw", sa.Float),
    sa.Column("min_discharge_kw", sa.Float),
    sa.Index(None, "station_id", "evse_id", "received_at"),
)

setpoints = sa.Table(
    "setpoints",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("station_id", sa.ForeignKey("stations.station_id"), nullable=False),
    sa.Column("evse_id", sa.Integer, nullable=False),
    sa.Column("transaction_id", sa.String(TRANSACTION_ID_LENGTH)),
    sa.Column("sent_at", UtcDateTime, nullable=False),
    sa.Column("setpoint_kw", sa.Float, nullable=False),
    sa.Column("discharge_limit_kw", sa.Float, nullable=False),
    sa.Column("planner", sa.String(64), nullable=False),
    sa.Column("status", sa.String(255), nullable=False),
    sa.Column("fallback_reason", sa.Text),
    sa.Index(None, "station_id", "evse_id", "sent_at"),
)

# No foreign key to stations: a refused connection from an unknown station is logged too.
events = sa.Table(
    "events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", UtcDateTime, nullable=False),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
    sa.Column("station_id", sa.String(STATION_ID_LENGTH)),
    sa.Column("actor", sa.String(64)),
    sa.Index(None, "kind", "at"),
)
"""``actor``: who made a change through the web API (the token's name); ``NULL`` for the
server's own events."""

site_limits = sa.Table(
    "site_limits",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("site_id", sa.String(64), nullable=False),
    sa.Column("import_limit_kw", sa.Float),
    sa.Column("export_limit_kw", sa.Float),
    sa.Column("starts_at", UtcDateTime, nullable=False),
    sa.Column("ends_at", UtcDateTime),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("recorded_at", UtcDateTime, nullable=False),
    sa.Column("kind", sa.String(32), nullable=False, server_default="limit"),
    sa.Column("source", sa.String(96), nullable=False, server_default="cli"),
    sa.Column("external_id", sa.String(128)),
    sa.Column("requested_reduction_kw", sa.Float),
    sa.Column("cancelled_at", UtcDateTime),
    sa.Column("cancelled_by", sa.String(96)),
    sa.Index(None, "site_id", "starts_at"),
)
"""Grid events: a site's connection limits for a while (a curtailment, a demand-response
call, a new agreement). ``NULL`` is no limit in that direction; ``ends_at`` ``NULL`` lasts
until a later event replaces it. ``kind`` is ``limit`` or ``demand-response``, ``source``
who asked (``cli``, ``api:TOKEN``), ``external_id`` the sender's own id for the event; a
cancelled event (``cancelled_at``) no longer holds."""

site_power = sa.Table(
    "site_power",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("site_id", sa.String(64), nullable=False),
    sa.Column("at", UtcDateTime, nullable=False),
    sa.Column("measured_kw", sa.Float),
    sa.Column("planned_kw", sa.Float, nullable=False),
    sa.Column("import_limit_kw", sa.Float),
    sa.Column("export_limit_kw", sa.Float),
    sa.Column("plugged", sa.Integer, nullable=False),
    sa.Index(None, "site_id", "at"),
    sa.Index(None, "at"),
)
"""Each site at each control instant: measured and planned net power (kW, + charging), the
limits in force (``NULL``: none) and the vehicles plugged (:mod:`v2ghub.store.site_power`)."""

api_tokens = sa.Table(
    "api_tokens",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("site_ids", sa.Text, nullable=False, server_default=""),
    sa.Column("owner_id", sa.String(255)),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("revoked_at", UtcDateTime),
)
"""Bearer tokens of the web API: only the SHA-256 of each token is kept. ``site_ids`` are
an operator's sites (comma-separated), ``owner_id`` an owner's id token."""

regulation_commitments = sa.Table(
    "regulation_commitments",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("starts_at", UtcDateTime, nullable=False),
    sa.Column("ends_at", UtcDateTime, nullable=False),
    sa.Column("capacity_kw", sa.Float, nullable=False),
    sa.Column("source", sa.String(96), nullable=False),
    sa.Column("external_id", sa.String(128)),
    sa.Column("recorded_at", UtcDateTime, nullable=False),
    sa.Column("cancelled_at", UtcDateTime),
    sa.Column("cancelled_by", sa.String(96)),
    sa.Index(None, "starts_at"),
)
"""Regulation the fleet committed to follow: a symmetric ``capacity_kw`` from ``starts_at``
to ``ends_at`` (``source``: ``api:TOKEN``, ``file:NAME``, ``cli``)."""

regulation_signals = sa.Table(
    "regulation_signals",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", UtcDateTime, nullable=False),
    sa.Column("signal", sa.Float, nullable=False),
    sa.Column("source", sa.String(96), nullable=False),
    sa.Column("recorded_at", UtcDateTime, nullable=False),
    sa.Index(None, "at"),
)
"""The regulation signal as it arrived: ``signal`` (-1..1, + = more charging) in force from
``at``, as a fraction of the committed capacity."""

regulation_shares = sa.Table(
    "regulation_shares",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("commitment_id", sa.Integer),
    sa.Column("mode", sa.String(32), nullable=False),
    sa.Column("station_id", sa.String(STATION_ID_LENGTH), nullable=False),
    sa.Column("evse_id", sa.Integer, nullable=False),
    sa.Column("transaction_id", sa.String(TRANSACTION_ID_LENGTH), nullable=False),
    sa.Column("from_at", UtcDateTime, nullable=False),
    sa.Column("baseline_kw", sa.Float, nullable=False),
    sa.Column("raise_share_kw", sa.Float, nullable=False),
    sa.Column("lower_share_kw", sa.Float, nullable=False),
    sa.Column("status", sa.String(255), nullable=False),
    sa.Index(None, "commitment_id", "from_at"),
    sa.Index(None, "from_at"),
)
"""What one EVSE was told to follow from ``from_at`` until its next row (or the end of its
commitment): ``mode`` ``CentralFrequency`` (a regulation commitment's signal) or
``LocalFrequency`` (droop; ``commitment_id`` ``NULL``), its baseline and its kW per unit
of signal each way, and the station's answer."""

grid_event_baselines = sa.Table(
    "grid_event_baselines",
    metadata,
    sa.Column("event_id", sa.Integer, primary_key=True),
    sa.Column("at", UtcDateTime, primary_key=True),
    sa.Column("site_id", sa.String(64), nullable=False),
    sa.Column("baseline_kw", sa.Float, nullable=False),
    sa.Column("step_s", sa.Integer, nullable=False),
)
"""A grid event's baseline: the site's planned net power per step (from ``at`` for
``step_s``) in the plan in force when the event arrived, without it; what a
demand-response event delivered is measured against it."""

grid_prices = sa.Table(
    "grid_prices",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("site_id", sa.String(64), nullable=False),
    sa.Column("starts_at", UtcDateTime, nullable=False),
    sa.Column("ends_at", UtcDateTime, nullable=False),
    sa.Column("import_price_cny_per_kwh", sa.Float, nullable=False),
    sa.Column("source", sa.String(96), nullable=False),
    sa.Column("external_id", sa.String(128)),
    sa.Column("recorded_at", UtcDateTime, nullable=False),
    sa.Column("cancelled_at", UtcDateTime),
    sa.Column("cancelled_by", sa.String(96)),
    sa.Index(None, "site_id", "starts_at"),
)
"""Price events: a site's import price (CNY/kWh) from ``starts_at`` to ``ends_at`` instead
of its tariff (``source``: ``openadr:VEN``; ``external_id`` the sender's own id); a
cancelled one (``cancelled_at``) no longer holds (:mod:`v2ghub.store.grid_prices`)."""

openadr_events = sa.Table(
    "openadr_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("source", sa.String(96), nullable=False),
    sa.Column("vtn_event_id", sa.String(128), nullable=False),
    sa.Column("modification_number", sa.Integer, nullable=False),
    sa.Column("signal_name", sa.String(64), nullable=False),
    sa.Column("site_ids", sa.Text, nullable=False, server_default=""),
    sa.Column("starts_at", UtcDateTime, nullable=False),
    sa.Column("ends_at", UtcDateTime, nullable=False),
    sa.Column("opt_state", sa.String(16), nullable=False),
    sa.Column("opt_reason", sa.Text, nullable=False, server_default=""),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("received_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.UniqueConstraint("source", "vtn_event_id"),
)
"""The OpenADR VEN's view of each VTN event (``source``: ``openadr:VEN``): its latest
modification, signal names (comma-separated), our sites it names (comma-separated), when it
runs, whether we opted in (``optIn``/``optOut``) and why, and its status as the VTN last
sent it (``far``, ``near``, ``active``, ``completed``, ``cancelled``)
(:mod:`v2ghub.store.openadr_events`)."""
