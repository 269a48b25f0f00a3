"""How open transactions become the control loop's :class:`PluggedSession` rows: the
query, the energy estimate and the power limits.

The rules are pure functions of one session row (with its station's columns) and its
latest needs row, so that they can be read and tested apart from the query.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from v2ghub.store import schema
from v2ghub.store.records import OcppVersion, PluggedSession
from v2ghub.units import WH_PER_KWH


def discharge_allowed(*, v2x_allowed: bool, ocpp_version: OcppVersion) -> bool:
    """Whether a station may be told to discharge: when registered with ``v2x_allowed``,
    on OCPP 2.1 (CentralSetpoint) and on 2.0.1 (negative limits) alike; otherwise its
    limits are charge-only."""
    del ocpp_version  # the same rule for both versions
    return v2x_allowed


def estimate_energy_kwh(
    *,
    battery_kwh: float | None,
    latest_soc: float | None,
    needs_soc: float | None,
    imported_since_needs_wh: int,
    exported_since_needs_wh: int,
) -> float | None:
    """Energy stored in the battery now (kWh), or ``None`` when nothing tells it.

    ``latest_soc * battery_kwh`` when a meter sample carried a SoC; else
    ``needs_soc * battery_kwh + (imported - exported since the needs) / 1000``. Charging
    and discharging losses are ignored (the register counts energy at the EVSE, a little
    more than reaches the battery when charging, a little less when discharging). The
    result is clipped to ``0 .. battery_kwh``.
    """
    if battery_kwh is None:
        return None
    if latest_soc is not None:
        energy_kwh = latest_soc * battery_kwh
    elif needs_soc is not None:
        metered_wh = imported_since_needs_wh - exported_since_needs_wh
        energy_kwh = needs_soc * battery_kwh + metered_wh / WH_PER_KWH
    else:
        return None
    return min(max(energy_kwh, 0.0), battery_kwh)


def plugged_session(session: Any, needs: Any | None) -> PluggedSession:
    """A :class:`PluggedSession` from a session row joined with its station, and its needs.

    ``max_charge_kw`` is the vehicle's limit capped at the station's, or the station's;
    ``max_discharge_kw`` is 0 unless :func:`discharge_allowed` and the vehicle offers it
    (on 2.0.1, whose needs cannot say so, and on 1.6, which sends none, the configured
    station's power).
    A station that has not yet sent a BootNotification counts as OCPP 2.0.1.
    """
    version = OcppVersion(session.ocpp_version or OcppVersion.V201)
    station_max_kw = float(session.max_power_kw)
    import_wh = session.import_register_wh
    export_wh = session.export_register_wh
    max_charge_kw = station_max_kw
    max_discharge_kw = 0.0
    energy_kwh = None
    if (
        needs is None
        and version is OcppVersion.V16
        and discharge_allowed(v2x_allowed=session.v2x_allowed, ocpp_version=version)
    ):
        # 1.6 sends no needs: a V2X station's configured power stands for the vehicle's.
        max_discharge_kw = station_max_kw
    if needs is not None:
        if needs.max_charge_kw is not None:
            max_charge_kw = min(needs.max_charge_kw, station_max_kw)
        offered_kw = needs.max_discharge_kw or 0.0
        if version in (OcppVersion.V201, OcppVersion.V16) and not offered_kw:
            # 2.0.1 needs (and needs given through the API for a 1.6 vehicle) cannot offer
            # discharge: the station's configuration stands for it.
            offered_kw = station_max_kw
        if offered_kw > 0 and discharge_allowed(
            v2x_allowed=session.v2x_allowed, ocpp_version=version
        ):
            max_discharge_kw = min(offered_kw, station_max_kw)
        # Registers when the needs arrived; before any reading, those at the start.
        base_import_wh = _first(needs.import_register_wh, session.start_import_register_wh)
        base_export_wh = _first(needs.export_register_wh, session.start_export_register_wh)
        energy_kwh = estimate_energy_kwh(
            battery_kwh=needs.battery_kwh,
            latest_soc=session.soc,
            needs_soc=needs.soc,
            imported_since_needs_wh=_since(import_wh, base_import_wh),
            exported_since_needs_wh=_since(export_wh, base_export_wh),
        )
    return PluggedSession(
        station_id=session.station_id,
        evse_id=session.evse_id,
        transaction_id=session.transaction_id,
        site_id=session.site_id,
        ocpp_version=version,
        started_at=session.started_at,
        departure_at=None if needs is None else needs.departure_at,
        battery_kwh=None if needs is None else needs.battery_kwh,
        energy_kwh=energy_kwh,
        target_energy_kwh=None if needs is None else needs.target_energy_kwh,
        min_energy_kwh=None if needs is None else needs.min_energy_kwh,
        max_charge_kw=max_charge_kw,
        max_discharge_kw=max_discharge_kw,
        import_register_wh=import_wh or 0,
        export_register_wh=export_wh or 0,
        last_meter_at=session.last_meter_at,
        control_mode=None if needs is None else needs.control_mode,
        soc=session.soc,
        min_charge_kw=0.0 if needs is None else min(needs.min_charge_kw or 0.0, max_charge_kw),
        min_discharge_kw=0.0
        if needs is None
        else min(needs.min_discharge_kw or 0.0, max_discharge_kw),
    )


NEEDS_BEFORE_START = timedelta(minutes=30)
"""Needs received this long before a transaction started still belong to it: with the
transaction starting when the power path closes, a vehicle declares its needs (ISO 15118
parameter discovery) before the Started event; the margin also absorbs a station clock a
little off the server's."""


def plugged_sessions(connection: Connection, now: datetime) -> list[PluggedSession]:
    """Open transactions, one per EVSE (the latest started), each with the latest needs
    received on its EVSE from :data:`NEEDS_BEFORE_START` before it started until ``now``.

    Every open transaction counts, whatever its start time says: a station's clock may run
    ahead of the server's."""
    sessions, stations, needs = schema.sessions.c, schema.stations.c, schema.ev_needs.c
    open_sessions = (
        sa.select(
            schema.sessions,
            stations.site_id,
            stations.v2x_allowed,
            stations.max_power_kw,
            stations.ocpp_version,
        )
        .join(schema.stations, stations.station_id == sessions.station_id)
        .where(sessions.ended_at.is_(None))
        .order_by(sessions.started_at)
    )
    rank = (
        sa.func.row_number()
        .over(
            partition_by=(sessions.station_id, sessions.transaction_id),
            order_by=(needs.received_at.desc(), needs.id.desc()),
        )
        .label("rank")
    )
    ranked = (
        sa.select(schema.ev_needs, sessions.transaction_id.label("session_id"), rank)
        .join(
            schema.sessions,
            sa.and_(
                sessions.station_id == needs.station_id,
                sessions.evse_id == needs.evse_id,
                sessions.ended_at.is_(None),
                needs.received_at <= now,
            ),
        )
        .subquery()
    )
    latest_needs = sa.select(ranked).where(ranked.c.rank == 1)
    session_rows = connection.execute(open_sessions).all()
    needs_rows = {(row.station_id, row.session_id): row for row in connection.execute(latest_needs)}
    per_evse: dict[tuple[str, int], PluggedSession] = {}
    for row in session_rows:  # oldest first: a later session on the EVSE replaces it
        needs_row = needs_rows.get((row.station_id, row.transaction_id))
        if needs_row is not None and needs_row.received_at < row.started_at - NEEDS_BEFORE_START:
            needs_row = None  # an earlier vehicle's
        per_evse[(row.station_id, row.evse_id)] = plugged_session(row, needs_row)
    return sorted(per_evse.values(), key=lambda s: (s.station_id, s.evse_id))


def _first(*values: int | None) -> int | None:
    return next((value for value in values if value is not None), None)


def _since(latest_wh: int | None, base_wh: int | None) -> int:
    return 0 if latest_wh is None or base_wh is None else latest_wh - base_wh
