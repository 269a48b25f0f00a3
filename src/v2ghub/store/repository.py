"""The store the live aggregator reads and writes: :class:`Store`.

The API is synchronous; asyncio callers run it in a worker thread. Each public write
method is one database transaction, committed before it returns (so the OCPP server may
acknowledge a meter value as soon as the call returns) and rolled back whole on any error.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, Row

from v2ghub.errors import InputError
from v2ghub.store import schema
from v2ghub.store.api_reads import (
    DayEnergy,
    EvseStatus,
    SessionFilter,
    SessionView,
    day_energy,
    evse_statuses,
    session_views,
)
from v2ghub.store.api_tokens import (
    ApiToken,
    Role,
    add_token,
    revoke_token,
    token_by_secret,
    tokens,
)
from v2ghub.store.checks import (
    check_aware,
    check_event_type,
    check_needs,
    check_sample,
    check_station_id,
    check_transaction_id,
    event_samples,
)
from v2ghub.store.database import (
    WRITE_OPTION,
    masked,
    migrate,
    open_engine,
    resolve_url,
    storage_error,
)
from v2ghub.store.grid_events import (
    GridEvent,
    GridEventKind,
    add_grid_event,
    cancel_grid_event,
    grid_events,
    limits_in_force,
)
from v2ghub.store.grid_prices import PriceEvent, price_events, prices_overlapping
from v2ghub.store.openadr_events import (
    EventLimit,
    EventPrice,
    VtnEventView,
    apply_vtn_event,
    vtn_event,
    vtn_events,
)
from v2ghub.store.plugged import plugged_sessions
from v2ghub.store.records import (
    Event,
    EventKind,
    EvNeeds,
    MeterSample,
    OcppVersion,
    PluggedSession,
    Setpoint,
    Station,
    StatusReport,
    StoredEvent,
    StoredStatus,
    TransactionEventRecord,
)
from v2ghub.store.regulation import (
    BaselineStep,
    Commitment,
    RegulationMode,
    Share,
    SignalSample,
    add_commitment,
    add_signals,
    baselined_event_ids,
    baselines,
    cancel_commitment,
    commitment_in_force,
    commitments,
    record_baselines,
    record_shares,
    shares,
    signals,
)
from v2ghub.store.regulation_readings import PowerReadings, power_readings
from v2ghub.store.site_power import (
    SitePowerRecord,
    SiteSeries,
    record_site_power,
    site_power_records,
    site_power_series,
)
from v2ghub.store.transactions import (
    insert_on_conflict,
    require_station,
    store_event,
    store_meter_values,
)


@dataclass(frozen=True)
class SessionRecord:
    """A transaction, open or finished, with its registers at start and latest (for settlement)."""

    station_id: str
    evse_id: int
    transaction_id: str
    id_token: str | None
    started_at: datetime
    ended_at: datetime | None
    stopped_reason: str | None
    start_import_register_wh: int | None
    start_export_register_wh: int | None
    import_register_wh: int | None
    export_register_wh: int | None
    soc: float | None
    last_meter_at: datetime | None

    @property
    def imported_wh(self) -> int:
        """Energy delivered to the vehicle so far (Wh): latest minus start import register."""
        return _difference(self.import_register_wh, self.start_import_register_wh)

    @property
    def exported_wh(self) -> int:
        """Energy the vehicle gave back so far (Wh): latest minus start export register."""
        return _difference(self.export_register_wh, self.start_export_register_wh)


@dataclass(frozen=True)
class VtnEventRow:
    """A row an OpenADR VEN wrote for a VTN event: a grid event (``table`` ``site_limits``)
    or a price event (``grid_prices``), with the sender's id ``EVENT/MODIFICATION/INTERVAL``."""

    table: str
    row_id: int
    site_id: str
    source: str
    external_id: str


def _refusal(event: TransactionEventRecord, error: Exception) -> str:
    """Why an event was refused: a check's own message, or what did not fit the store."""
    if isinstance(error, ValueError) and not isinstance(error, sa.exc.DataError):
        return str(error)
    return (
        f"station {event.station_id!r}, transaction {event.transaction_id!r}, seq_no "
        f"{event.seq_no}: a value does not fit the store ({type(error).__name__})"
    )


def _difference(latest: int | None, start: int | None) -> int:
    return 0 if latest is None or start is None else latest - start


class Store:
    """Stations, transactions, meter values, needs, setpoints and the event log."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @classmethod
    def open(cls, *, data_dir: Path | None = None, database_url: str | None = None) -> Store:
        """Open (and migrate) the database: ``database_url`` if given, else a SQLite file."""
        engine = open_engine(resolve_url(data_dir=data_dir, database_url=database_url))
        try:
            migrate(engine)
        except Exception as error:
            engine.dispose()
            # A migration is one transaction: on a full or read-only disk it is rolled
            # back whole, and the cause fits on one line.
            problem = storage_error(error, url=masked(engine.url))
            if problem is not None:
                raise InputError(f"cannot prepare the database: {problem}") from None
            raise
        return cls(engine)

    @property
    def url(self) -> str:
        """The database URL, password masked."""
        return masked(self._engine.url)

    @property
    def engine(self) -> Engine:
        return self._engine

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """One write transaction; a full, read-only or failing disk raises
        :class:`~v2ghub.store.database.StorageError` (the transaction rolled back)."""
        try:
            with self._engine.connect() as connection:
                connection.execution_options(**{WRITE_OPTION: True})
                with connection.begin():
                    yield connection
        except sa.exc.DBAPIError as error:
            problem = storage_error(error, url=self.url)
            if problem is None:
                raise
            raise problem from error

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._engine.connect() as connection, connection.begin():
            yield connection

    # Stations -------------------------------------------------------------------------

    def add_station(
        self,
        station_id: str,
        *,
        site_id: str,
        password_hash: str,
        v2x_allowed: bool = False,
        max_power_kw: float = 11.0,
    ) -> Station:
        """Register a station; an id already registered is refused."""
        check_station_id(station_id)
        if not site_id:
            raise ValueError(f"station {station_id!r}: site_id must not be empty")
        if not max_power_kw > 0 or max_power_kw == float("inf"):
            raise ValueError(f"station {station_id!r}: max_power_kw {max_power_kw} must be > 0")
        now = datetime.now(UTC)
        with self._write() as connection:
            if _station_row(connection, station_id) is not None:
                raise ValueError(f"station {station_id!r} is already registered")
            connection.execute(
                schema.stations.insert().values(
                    station_id=station_id,
                    site_id=site_id,
                    password_hash=password_hash,
                    v2x_allowed=v2x_allowed,
                    max_power_kw=max_power_kw,
                    created_at=now,
                )
            )
        return Station(station_id, site_id, password_hash, v2x_allowed, max_power_kw)

    def set_password(self, station_id: str, password_hash: str) -> None:
        with self._write() as connection:
            _update_station(connection, station_id, password_hash=password_hash)

    def station(self, station_id: str) -> Station | None:
        with self._read() as connection:
            row = _station_row(connection, station_id)
        return None if row is None else _station(row)

    def stations(self) -> list[Station]:
        query = sa.select(schema.stations).order_by(schema.stations.c.station_id)
        with self._read() as connection:
            return [_station(row) for row in connection.execute(query)]

    def station_sites(self) -> dict[str, str]:
        """Each registered station's site, in station order (two columns: the web API's
        live feed reads it every second)."""
        table = schema.stations
        query = sa.select(table.c.station_id, table.c.site_id).order_by(table.c.station_id)
        with self._read() as connection:
            return {row.station_id: row.site_id for row in connection.execute(query)}

    def record_boot(
        self,
        station_id: str,
        *,
        ocpp_version: OcppVersion,
        vendor: str | None,
        model: str | None,
        at: datetime,
    ) -> None:
        """Keep what a BootNotification told: the connection's OCPP version, vendor, model."""
        check_aware("at", at)
        with self._write() as connection:
            _update_station(
                connection,
                station_id,
                ocpp_version=OcppVersion(ocpp_version).value,
                vendor=vendor,
                model=model,
                last_boot_at=at,
            )

    def set_evse_status(self, station_id: str, evse_id: int, status: str, at: datetime) -> None:
        """Keep an EVSE's latest status (StatusNotification's connector status)."""
        self.set_evse_statuses([StatusReport(station_id, evse_id, status, at)])

    def set_evse_statuses(self, rows: Sequence[StatusReport]) -> list[None]:
        """Keep several EVSEs' statuses in one database transaction (one result each)."""
        for row in rows:
            check_aware("at", row.at)
        with self._write() as connection:
            for row in rows:
                require_station(connection, row.station_id)
                insert = insert_on_conflict(connection, schema.evses).values(
                    station_id=row.station_id,
                    evse_id=row.evse_id,
                    status=row.status,
                    updated_at=row.at,
                )
                connection.execute(
                    insert.on_conflict_do_update(
                        index_elements=["station_id", "evse_id"],
                        set_={"status": row.status, "updated_at": row.at},
                    )
                )
        return [None] * len(rows)

    # Transactions and meter values ----------------------------------------------------

    def transaction_event(
        self,
        *,
        station_id: str,
        evse_id: int | None,
        transaction_id: str,
        event_type: str,
        seq_no: int,
        at: datetime,
        trigger_reason: str,
        samples: Sequence[MeterSample],
        id_token: str | None = None,
        stopped_reason: str | None = None,
        offline: bool = False,
    ) -> bool:
        """Store a TransactionEvent and its meter samples; ``False`` for a replay.

        A replay (same station, transaction and ``seq_no``) changes nothing. An Updated or
        Ended for an unknown transaction starts it (the station was offline, or the server
        lost it); a Started for a known one resumes it. ``evse_id`` may be ``None`` after
        the first event (OCPP names the EVSE once). Registers never go backwards, in
        ``seq_no`` order among the events nor in time among all the transaction's readings,
        and a transaction that ended takes no reading measured after its end: otherwise
        ``ValueError`` and nothing of the event is stored.
        """
        event = TransactionEventRecord(
            station_id=station_id,
            evse_id=evse_id,
            transaction_id=transaction_id,
            event_type=event_type,
            seq_no=seq_no,
            at=at,
            trigger_reason=trigger_reason,
            samples=samples,
            id_token=id_token,
            stopped_reason=stopped_reason,
            offline=offline,
        )
        [result] = self.transaction_events([event])
        if result.status is StoredStatus.REFUSED:
            raise ValueError(result.reason)
        return result.status is StoredStatus.STORED

    def transaction_events(self, events: Sequence[TransactionEventRecord]) -> list[StoredEvent]:
        """Store several TransactionEvents in one database transaction: a group commit.

        Each event is stored in a savepoint of its own, so a refused one (``REFUSED`` with
        the check's message) leaves the others stored; the rest are ``STORED``, or
        ``REPLAY`` for one stored before. Everything is committed before this returns.
        """
        results: list[StoredEvent] = []
        with self._write() as connection:
            for event in events:
                try:
                    ordered = _checked_samples(event)
                    with connection.begin_nested():
                        stored = store_event(connection, event, ordered)
                except (ValueError, OverflowError, sa.exc.DataError) as error:
                    # Its savepoint is rolled back; the others of the group stay.
                    results.append(StoredEvent(StoredStatus.REFUSED, _refusal(event, error)))
                    continue
                results.append(StoredEvent(StoredStatus.STORED if stored else StoredStatus.REPLAY))
        return results

    def add_meter_values(
        self, station_id: str, evse_id: int, samples: Sequence[MeterSample], *, at: datetime
    ) -> None:
        """Store a MeterValues message's samples (idempotent on replay).

        The samples belong to the transaction open on the EVSE at ``at`` (the first
        sample's time), or to none; one measured after that transaction ended belongs to
        the one open when it was measured, or to none. Their own ``transaction_id`` and
        ``seq_no`` are ignored and stored as that transaction (``""`` for none) and
        ``seq_no`` -1. A sample may not have registers below the reading stored before it
        in time, nor above the one stored after it (the transaction's readings, or the
        EVSE's outside any): ``ValueError``, nothing stored.
        """
        check_aware("at", at)
        ordered = sorted(samples, key=lambda sample: sample.measured_at)
        for sample in ordered:
            check_sample(sample)
        with self._write() as connection:
            store_meter_values(connection, station_id, evse_id, ordered, at=at)

    def meter_samples(self, station_id: str, transaction_id: str) -> list[MeterSample]:
        """A transaction's samples in the order they were measured (time, then ``seq_no``)."""
        values = schema.meter_values.c
        query = (
            sa.select(schema.meter_values)
            .where(values.station_id == station_id, values.transaction_id == transaction_id)
            .order_by(values.measured_at, values.seq_no)
        )
        with self._read() as connection:
            return [
                MeterSample(
                    station_id=row.station_id,
                    transaction_id=row.transaction_id,
                    seq_no=row.seq_no,
                    measured_at=row.measured_at,
                    import_register_wh=row.import_register_wh,
                    export_register_wh=row.export_register_wh,
                    power_kw=row.power_kw,
                    soc=row.soc,
                )
                for row in connection.execute(query)
            ]

    def latest_export_wh(self, station_id: str, transaction_id: str) -> int:
        """The transaction's latest export register (0 when it has none yet), for readings
        that leave the export register out."""
        sessions = schema.sessions.c
        query = sa.select(sessions.export_register_wh).where(
            sessions.station_id == station_id, sessions.transaction_id == transaction_id
        )
        with self._read() as connection:
            value = connection.scalar(query)
        return int(value or 0)

    def evse_export_wh(self, station_id: str, evse_id: int) -> int:
        """The latest export register of the transaction open on an EVSE (0 when none),
        for MeterValues readings that leave the export register out."""
        sessions = schema.sessions.c
        query = (
            sa.select(sessions.export_register_wh)
            .where(
                sessions.station_id == station_id,
                sessions.evse_id == evse_id,
                sessions.ended_at.is_(None),
            )
            .order_by(sessions.started_at.desc())
            .limit(1)
        )
        with self._read() as connection:
            value = connection.scalar(query)
        return int(value or 0)

    def session_start(self, station_id: str, transaction_id: str) -> tuple[int, datetime] | None:
        """A transaction's EVSE and start, or None when it is not stored."""
        sessions = schema.sessions.c
        query = sa.select(sessions.evse_id, sessions.started_at).where(
            sessions.station_id == station_id, sessions.transaction_id == transaction_id
        )
        with self._read() as connection:
            row = connection.execute(query).first()
        return None if row is None else (int(row.evse_id), row.started_at)

    def last_export_wh(self, station_id: str, evse_id: int) -> int | None:
        """The export register of the EVSE's latest transaction, open or ended (None when it
        has had none): where an OCPP 1.6 transaction's export register starts."""
        sessions = schema.sessions.c
        query = (
            sa.select(sessions.export_register_wh)
            .where(sessions.station_id == station_id, sessions.evse_id == evse_id)
            .order_by(sessions.started_at.desc())
            .limit(1)
        )
        with self._read() as connection:
            value = connection.scalar(query)
        return None if value is None else int(value)

    def count_meter_values(self) -> int:
        with self._read() as connection:
            count = connection.scalar(sa.select(sa.func.count()).select_from(schema.meter_values))
        return int(count or 0)

    def sessions(self, *, since: datetime | None = None) -> list[SessionRecord]:
        """Transactions still open or ended at or after ``since`` (all when ``None``)."""
        columns = schema.sessions.c
        query = sa.select(schema.sessions).order_by(
            columns.started_at, columns.station_id, columns.transaction_id
        )
        if since is not None:
            check_aware("since", since)
            query = query.where(sa.or_(columns.ended_at.is_(None), columns.ended_at >= since))
        names = list(SessionRecord.__dataclass_fields__)
        with self._read() as connection:
            return [
                SessionRecord(**{name: row._mapping[name] for name in names})
                for row in connection.execute(query)
            ]

    # Needs and the control loop's view ------------------------------------------------

    def record_needs(self, needs: EvNeeds) -> None:
        """Keep a NotifyEVChargingNeeds; the latest per EVSE is the one that counts.

        The EVSE's registers at that moment are kept with it, so that energy metered since
        moves the needs' SoC forward in :meth:`plugged`.
        """
        check_needs(needs)
        with self._write() as connection:
            require_station(connection, needs.station_id)
            sessions = schema.sessions.c
            open_session = connection.execute(
                sa.select(sessions.import_register_wh, sessions.export_register_wh)
                .where(
                    sessions.station_id == needs.station_id,
                    sessions.evse_id == needs.evse_id,
                    sessions.ended_at.is_(None),
                )
                .order_by(sessions.started_at.desc())
                .limit(1)
            ).first()
            connection.execute(
                schema.ev_needs.insert().values(
                    **{name: getattr(needs, name) for name in EvNeeds.__dataclass_fields__},
                    import_register_wh=None if open_session is None else open_session[0],
                    export_register_wh=None if open_session is None else open_session[1],
                )
            )

    def plugged(self, now: datetime) -> list[PluggedSession]:
        """Open transactions at ``now`` with their latest needs: the control loop's fleet.

        One session per EVSE (the latest started, should an Ended have been lost). Needs
        count when received on the EVSE after the session started. See
        :func:`v2ghub.store.plugged.plugged_session` for the energy estimate and limits.
        """
        check_aware("now", now)
        with self._read() as connection:
            return plugged_sessions(connection, now)

    # Setpoints and the event log ------------------------------------------------------

    def record_setpoints(self, setpoints: Sequence[Setpoint]) -> None:
        for setpoint in setpoints:
            check_aware("sent_at", setpoint.sent_at)
        if not setpoints:
            return
        rows = [
            {name: getattr(setpoint, name) for name in Setpoint.__dataclass_fields__}
            for setpoint in setpoints
        ]
        with self._write() as connection:
            for station_id in sorted({setpoint.station_id for setpoint in setpoints}):
                require_station(connection, station_id)
            connection.execute(schema.setpoints.insert(), rows)

    def latest_setpoints(self, station_id: str | None = None) -> list[Setpoint]:
        """The last setpoint sent to each EVSE (of one station, or all), by station and EVSE."""
        columns = schema.setpoints.c
        rank = (
            sa.func.row_number()
            .over(
                partition_by=(columns.station_id, columns.evse_id),
                order_by=(columns.sent_at.desc(), columns.id.desc()),
            )
            .label("rank")
        )
        ranked = sa.select(schema.setpoints, rank)
        if station_id is not None:
            ranked = ranked.where(columns.station_id == station_id)
        subquery = ranked.subquery()
        query = (
            sa.select(subquery)
            .where(subquery.c.rank == 1)
            .order_by(subquery.c.station_id, subquery.c.evse_id)
        )
        names = list(Setpoint.__dataclass_fields__)
        with self._read() as connection:
            return [
                Setpoint(**{name: row._mapping[name] for name in names})
                for row in connection.execute(query)
            ]

    def record_event(self, event: Event) -> None:
        check_aware("at", event.at)
        with self._write() as connection:
            connection.execute(
                schema.events.insert().values(
                    at=event.at,
                    kind=event.kind.value,
                    detail=event.detail,
                    station_id=event.station_id,
                    actor=event.actor,
                )
            )

    # Grid events ----------------------------------------------------------------------

    def add_site_limit(
        self,
        site_id: str,
        *,
        import_limit_kw: float | None,
        export_limit_kw: float | None,
        starts_at: datetime,
        ends_at: datetime | None = None,
        reason: str,
        at: datetime,
        kind: GridEventKind = GridEventKind.LIMIT,
        source: str = "cli",
        external_id: str | None = None,
        requested_reduction_kw: float | None = None,
    ) -> int:
        """Record a grid event: ``site_id``'s limits (kW at the connection point, ``None``
        for no limit) from ``starts_at`` until ``ends_at`` (``None``: until a later event
        replaces them); its id. See :mod:`v2ghub.store.grid_events`."""
        with self._write() as connection:
            return add_grid_event(
                connection,
                site_id,
                import_limit_kw=import_limit_kw,
                export_limit_kw=export_limit_kw,
                starts_at=starts_at,
                ends_at=ends_at,
                reason=reason,
                at=at,
                kind=kind,
                source=source,
                external_id=external_id,
                requested_reduction_kw=requested_reduction_kw,
            )

    def cancel_grid_event(self, event_id: int, *, by: str, at: datetime) -> bool:
        """Cancel a grid event; whether one in effect was (a cancelled one stays so)."""
        with self._write() as connection:
            return cancel_grid_event(connection, event_id, by=by, at=at)

    def grid_events(
        self,
        *,
        site_ids: frozenset[str] | None = None,
        in_force_at: datetime | None = None,
        since: datetime | None = None,
        event_id: int | None = None,
        limit: int = 500,
    ) -> list[GridEvent]:
        """Grid events, newest first (:func:`v2ghub.store.grid_events.grid_events`)."""
        with self._read() as connection:
            return grid_events(
                connection,
                site_ids=site_ids,
                in_force_at=in_force_at,
                since=since,
                event_id=event_id,
                limit=limit,
            )

    def site_limits(self, now: datetime) -> dict[str, tuple[float, float]]:
        """The limits in force at ``now`` per site: (import, export) kW, ``inf`` for none.
        Of several events in force for a site, the one recorded last holds."""
        with self._read() as connection:
            return limits_in_force(connection, now)

    # OpenADR ---------------------------------------------------------------------------

    def apply_vtn_event(
        self,
        view: VtnEventView,
        *,
        limits: Sequence[EventLimit] = (),
        prices: Sequence[EventPrice] = (),
        at: datetime,
    ) -> None:
        """One modification of a VTN event, in one transaction: earlier rows cancelled, new
        ones written, the VEN's view kept (:mod:`v2ghub.store.openadr_events`)."""
        with self._write() as connection:
            apply_vtn_event(connection, view, limits=limits, prices=prices, at=at)

    def vtn_event(self, source: str, vtn_event_id: str) -> VtnEventView | None:
        """The VEN's view of one VTN event, or None."""
        with self._read() as connection:
            return vtn_event(connection, source, vtn_event_id)

    def vtn_events(self, *, source: str | None = None) -> list[VtnEventView]:
        """The VEN's view of every VTN event, first received first."""
        with self._read() as connection:
            return vtn_events(connection, source=source)

    def vtn_event_rows(
        self, *, source: str | None = None, vtn_event_id: str | None = None
    ) -> list[VtnEventRow]:
        """The grid events and price events OpenADR VENs wrote (of ``source``, else of every
        ``openadr:`` source; of one VTN event, if given), grid events first, each by id."""
        found: list[VtnEventRow] = []
        with self._read() as connection:
            for table in (schema.site_limits, schema.grid_prices):
                columns = table.c
                query = (
                    sa.select(columns.id, columns.site_id, columns.source, columns.external_id)
                    .where(columns.external_id.is_not(None))
                    .order_by(columns.id)
                )
                if source is None:
                    query = query.where(columns.source.startswith("openadr:", autoescape=True))
                else:
                    query = query.where(columns.source == source)
                if vtn_event_id is not None:
                    query = query.where(
                        columns.external_id.startswith(f"{vtn_event_id}/", autoescape=True)
                    )
                found.extend(
                    VtnEventRow(table.name, int(row.id), row.site_id, row.source, row.external_id)
                    for row in connection.execute(query)
                )
        return found

    def prices_overlapping(self, start: datetime, end: datetime) -> list[PriceEvent]:
        """Price events in force at some time in ``[start, end)``, oldest recorded first
        (:mod:`v2ghub.store.grid_prices`)."""
        with self._read() as connection:
            return prices_overlapping(connection, start=start, end=end)

    def price_events(self, *, source: str | None = None) -> list[PriceEvent]:
        """Every price event (of ``source``), oldest recorded first."""
        with self._read() as connection:
            return price_events(connection, source=source)

    # Web API tokens -------------------------------------------------------------------

    def add_token(
        self,
        name: str,
        *,
        role: Role,
        token: str,
        at: datetime,
        site_ids: tuple[str, ...] = (),
        owner_id: str | None = None,
    ) -> ApiToken:
        """Keep the hash of a new bearer token (:mod:`v2ghub.store.api_tokens`)."""
        with self._write() as connection:
            return add_token(
                connection,
                name,
                role=role,
                token=token,
                at=at,
                site_ids=site_ids,
                owner_id=owner_id,
            )

    def token(self, token: str) -> ApiToken | None:
        """The valid token whose secret is ``token``, or None."""
        with self._read() as connection:
            return token_by_secret(connection, token)

    def tokens(self) -> list[ApiToken]:
        with self._read() as connection:
            return tokens(connection)

    def revoke_token(self, name: str, *, at: datetime) -> bool:
        with self._write() as connection:
            return revoke_token(connection, name, at=at)

    def events(self, *, kind: EventKind | None = None, limit: int = 100) -> list[Event]:
        """The newest ``limit`` events (of one kind, or all), newest first."""
        columns = schema.events.c
        query = sa.select(schema.events).order_by(columns.at.desc(), columns.id.desc()).limit(limit)
        if kind is not None:
            query = query.where(columns.kind == kind)
        with self._read() as connection:
            return [
                Event(
                    at=row.at,
                    kind=EventKind(row.kind),
                    detail=row.detail,
                    station_id=row.station_id,
                    actor=row.actor,
                )
                for row in connection.execute(query)
            ]

    # Web API reads --------------------------------------------------------------------

    def record_site_power(self, records: Sequence[SitePowerRecord]) -> None:
        """Record each site's power at one control instant (:mod:`v2ghub.store.site_power`)."""
        with self._write() as connection:
            record_site_power(connection, records)

    def site_power_records(self, *, since: datetime) -> list[SitePowerRecord]:
        """Every site's recorded power from ``since`` on, in time order."""
        with self._read() as connection:
            return site_power_records(connection, since=since)

    def site_power(
        self,
        *,
        start: datetime,
        end: datetime,
        origin: datetime,
        site_ids: frozenset[str] | None = None,
    ) -> list[SiteSeries]:
        """The sites' recorded power that can hold within ``[start, end)``, per site."""
        with self._read() as connection:
            return site_power_series(
                connection, start=start, end=end, origin=origin, site_ids=site_ids
            )

    def evse_statuses(self, station_ids: Sequence[str] | None = None) -> list[EvseStatus]:
        """The EVSEs of some stations (all when None) with their latest status."""
        with self._read() as connection:
            return evse_statuses(connection, station_ids)

    def session_views(
        self, where: SessionFilter, *, now: datetime, limit: int | None = None
    ) -> list[SessionView]:
        """Sessions as the web API shows them, newest first
        (:func:`v2ghub.store.api_reads.session_views`)."""
        check_aware("now", now)
        with self._read() as connection:
            return session_views(connection, where, now=now, limit=limit)

    def day_energy(
        self,
        *,
        start: datetime,
        now: datetime,
        site_ids: frozenset[str] | None = None,
        owner_id: str | None = None,
    ) -> DayEnergy:
        """Energy metered since ``start`` by the sessions open since then
        (:func:`v2ghub.store.api_reads.day_energy`)."""
        check_aware("start", start)
        check_aware("now", now)
        with self._read() as connection:
            return day_energy(
                connection, start=start, now=now, site_ids=site_ids, owner_id=owner_id
            )

    # Regulation and demand-response measurement (:mod:`v2ghub.store.regulation`) ------

    def add_commitment(
        self,
        *,
        starts_at: datetime,
        ends_at: datetime,
        capacity_kw: float,
        source: str,
        at: datetime,
        external_id: str | None = None,
    ) -> int:
        """Record a regulation commitment; its id."""
        with self._write() as connection:
            return add_commitment(
                connection,
                starts_at=starts_at,
                ends_at=ends_at,
                capacity_kw=capacity_kw,
                source=source,
                at=at,
                external_id=external_id,
            )

    def cancel_commitment(self, commitment_id: int, *, by: str, at: datetime) -> bool:
        with self._write() as connection:
            return cancel_commitment(connection, commitment_id, by=by, at=at)

    def commitments(
        self,
        *,
        overlapping: tuple[datetime, datetime] | None = None,
        commitment_id: int | None = None,
        include_cancelled: bool = True,
    ) -> list[Commitment]:
        with self._read() as connection:
            return commitments(
                connection,
                overlapping=overlapping,
                commitment_id=commitment_id,
                include_cancelled=include_cancelled,
            )

    def commitment_in_force(self, now: datetime) -> Commitment | None:
        with self._read() as connection:
            return commitment_in_force(connection, now)

    def add_signals(self, samples: Sequence[SignalSample], *, source: str, at: datetime) -> int:
        """Record regulation signal samples, all or none; how many."""
        with self._write() as connection:
            return add_signals(connection, samples, source=source, at=at)

    def signals(self, *, start: datetime, end: datetime) -> list[SignalSample]:
        with self._read() as connection:
            return signals(connection, start=start, end=end)

    def record_shares(self, shares: Sequence[Share]) -> None:
        with self._write() as connection:
            record_shares(connection, shares)

    def shares(
        self,
        *,
        commitment_id: int | None = None,
        mode: RegulationMode | None = None,
        since: datetime | None = None,
    ) -> list[Share]:
        with self._read() as connection:
            return shares(connection, commitment_id=commitment_id, mode=mode, since=since)

    def record_baselines(self, steps: Sequence[BaselineStep]) -> None:
        with self._write() as connection:
            record_baselines(connection, steps)

    def baselines(self, event_ids: Sequence[int]) -> list[BaselineStep]:
        with self._read() as connection:
            return baselines(connection, event_ids)

    def baselined_event_ids(self, event_ids: Sequence[int]) -> set[int]:
        with self._read() as connection:
            return baselined_event_ids(connection, event_ids)

    # Power readings for regulation scoring (:mod:`v2ghub.store.regulation_readings`) ----

    def power_readings(
        self, pairs: Sequence[tuple[str, str]], *, start: datetime, end: datetime
    ) -> PowerReadings:
        """The power readings of transactions ``(station_id, transaction_id)`` measured in
        ``[start, end)``, as columns in pair and time order."""
        with self._read() as connection:
            return power_readings(connection, pairs, start=start, end=end)


# Helpers -------------------------------------------------------------------------------


def _station_row(connection: Connection, station_id: str) -> Row[Any] | None:
    query = sa.select(schema.stations).where(schema.stations.c.station_id == station_id)
    return connection.execute(query).first()


def _update_station(connection: Connection, station_id: str, **values: Any) -> None:
    result = connection.execute(
        schema.stations.update().where(schema.stations.c.station_id == station_id).values(**values)
    )
    if result.rowcount == 0:
        raise ValueError(f"station {station_id!r} is not registered")


def _station(row: Row[Any]) -> Station:
    return Station(
        station_id=row.station_id,
        site_id=row.site_id,
        password_hash=row.password_hash,
        v2x_allowed=row.v2x_allowed,
        max_power_kw=row.max_power_kw,
        ocpp_version=None if row.ocpp_version is None else OcppVersion(row.ocpp_version),
        vendor=row.vendor,
        model=row.model,
        last_boot_at=row.last_boot_at,
    )


def _checked_samples(event: TransactionEventRecord) -> list[MeterSample]:
    """A TransactionEvent's fields checked; its samples in time order, for ``store_event``."""
    check_event_type(event.event_type)
    if event.seq_no < 0:
        raise ValueError(f"seq_no {event.seq_no} must be >= 0")
    check_transaction_id(event.transaction_id)
    check_aware("at", event.at)
    return event_samples(event.samples, event.station_id, event.transaction_id, event.seq_no)
