"""A day-ahead planning problem: every session of a file, planned at once over a price series.

Unlike the twin, which re-plans the vehicles plugged in at each control instant, a
day-ahead plan sees the whole horizon of the prices file up front: each session becomes a
vehicle of one :class:`~v2ghub.model.problem.Problem` that is plugged from its arrival step
to its departure step, and a planner fixes its power in every step at once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from v2ghub.errors import InputError
from v2ghub.model.case import CityCase
from v2ghub.model.fleet import Fleet
from v2ghub.model.problem import Problem
from v2ghub.model.sites import SiteLimits
from v2ghub.model.tariff import PeriodKind
from v2ghub.model.time_grid import TimeGrid
from v2ghub.scenarios.prices_csv import PriceSeries
from v2ghub.units import SECONDS_PER_MINUTE

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


def period_kinds(import_price_cny_per_kwh: FloatArray) -> npt.NDArray[np.int8]:
    """TOU period kind of each step, read off the import prices alone.

    A prices file says what each step costs, not which tariff period it belongs to, so the
    kinds are derived from the distinct price levels: the steps at the highest level are
    :attr:`~PeriodKind.PEAK`, those at the lowest :attr:`~PeriodKind.VALLEY`, all others
    :attr:`~PeriodKind.FLAT`. With a single level every step is FLAT (there is no peak to
    shave). Only the ``v2g-rules`` planner reads the kinds: it discharges at PEAK steps.
    With a TOU tariff that has a critical peak, that is the critical peak alone.

    Parameters
    ----------
    import_price_cny_per_kwh
        Import price of each step, CNY/kWh.

    Returns
    -------
    numpy.ndarray
        ``int8`` :class:`PeriodKind` per step.
    """
    kinds = np.full(import_price_cny_per_kwh.shape, PeriodKind.FLAT, dtype=np.int8)
    if import_price_cny_per_kwh.size == 0:
        return kinds
    highest = import_price_cny_per_kwh.max()
    lowest = import_price_cny_per_kwh.min()
    if highest > lowest:
        kinds[import_price_cny_per_kwh == highest] = PeriodKind.PEAK
        kinds[import_price_cny_per_kwh == lowest] = PeriodKind.VALLEY
    return kinds


def day_ahead_problem(
    *,
    fleet: Fleet,
    sites: SiteLimits,
    prices: PriceSeries,
    degradation_cny_per_kwh: float,
    sessions_file: Path,
    session_rows: Sequence[int] | IntArray = (),
) -> Problem:
    """The sessions of ``fleet`` that hold a whole price step, as vehicles of one problem
    over the prices' grid.

    A session is plugged for the whole steps within its stay: ``arrival_step`` is the
    first step starting at or after its arrival and ``departure_step`` the last step
    boundary at or before its departure (:meth:`TimeGrid.plugged_steps`). A session with
    no such step (shorter than a step, or entirely outside the prices) is left out: the
    problem's ``vehicle_index`` names the sessions kept, and :func:`sessions_without_step`
    reports the others. ``control_steps`` is the whole horizon, so the rule planners roll
    out every step. Prices become float copies of the exact ones; the base load is the
    file's (zeros without one); there is no renewable surplus.

    Parameters
    ----------
    fleet
        The sessions, in file order (times in UTC epoch seconds).
    sites
        Import and export limits (kW) of the sites ``fleet.site_index`` points into.
    prices
        The price series; its grid is the problem's horizon.
    degradation_cny_per_kwh
        Battery wear per kWh discharged (at the charger), CNY/kWh, >= 0.
    sessions_file
        The file the sessions came from, named in errors.
    session_rows
        The row of each session as the loader read it; without them data row ``i`` is
        taken as row ``i + 2``.

    Returns
    -------
    Problem
        The problem; its own checks have passed.

    Raises
    ------
    InputError
        A session overlaps the prices' horizon but arrives before its first step starts or
        leaves after its last one ends. The message names the sessions file, the
        session's row, the session id and the field.
    """
    if not (math.isfinite(degradation_cny_per_kwh) and degradation_cny_per_kwh >= 0):
        raise ValueError(f"degradation_cny_per_kwh must be >= 0, got {degradation_cny_per_kwh}")
    n = fleet.n_sessions
    if n and int(fleet.site_index.max()) >= sites.n_sites:
        raise ValueError("fleet.site_index points past the sites' limits")
    grid = prices.grid
    _check_overlap(fleet, grid, sessions_file, session_rows)
    arrival_step, departure_step, without_step = _steps(fleet, grid)
    keep = np.flatnonzero(~without_step)
    if keep.size < n:
        fleet = fleet.take(keep)
        arrival_step, departure_step = arrival_step[keep], departure_step[keep]
    import_price = prices.import_series()
    base_load_kw = (
        np.array(prices.base_load_kw, dtype=np.float64)
        if prices.base_load_kw is not None
        else np.zeros(grid.length)
    )
    return _fleet_problem(
        grid=grid,
        fleet=fleet,
        sites=sites,
        vehicle_index=keep.astype(np.int64),
        arrival_step=arrival_step,
        departure_step=departure_step,
        import_price_cny_per_kwh=import_price,
        export_price_cny_per_kwh=prices.export_series(),
        period_kind=period_kinds(import_price),
        base_load_kw=base_load_kw,
        renewable_surplus_kw=np.zeros(grid.length),
        degradation_cny_per_kwh=float(degradation_cny_per_kwh),
    )


def check_prices_for_lp(problem: Problem, *, prices: PriceSeries, prices_file: Path) -> None:
    """Refuse prices at which the LP would charge and discharge a vehicle in the same step.

    The LP (:mod:`v2ghub.planning.lp`) gives each vehicle a charging power ``c`` and a
    discharging power ``d`` and reports ``c - d``. Raising both by amounts that leave the
    stored energy unchanged (``d = charge_efficiency * discharge_efficiency * c``) changes
    the cost by ``c * dt_h * (import_price - round_trip * (export_price - degradation))``,
    so the LP's optimum is something a charger can do only when that is never negative:

        export_price - degradation <= import_price / round_trip

    in every step, for the highest round trip ``charge_efficiency * discharge_efficiency``
    of the vehicles that may discharge. Non-negative prices alone do not ensure it (a step
    that pays more for export than it charges for import breaks it).

    Parameters
    ----------
    problem
        The day-ahead problem (its prices are the float copies of ``prices``).
    prices
        The exact prices, named in the error.
    prices_file
        The prices file, named in the error; step ``k`` is on row ``k + 2``.

    Raises
    ------
    InputError
        Naming the prices file, the first step's row and ``export_price_cny_per_kwh``.
    """
    may_discharge = problem.max_discharge_kw > 0
    if not may_discharge.any():
        return
    round_trip = float(
        np.max(
            problem.charge_efficiency[may_discharge] * problem.discharge_efficiency[may_discharge]
        )
    )
    margin = problem.export_price_cny_per_kwh - problem.degradation_cny_per_kwh
    bad = np.flatnonzero(margin * round_trip > problem.import_price_cny_per_kwh)
    if bad.size:
        k = int(bad[0])
        raise InputError(
            f"at {problem.grid.time_at(k).isoformat()} the export price "
            f"{prices.export_price_cny_per_kwh[k]} minus degradation "
            f"{problem.degradation_cny_per_kwh:g} exceeds the import price "
            f"{prices.import_price_cny_per_kwh[k]} / round trip {round_trip:.4g}: the LP would "
            "charge and discharge at once; use --planner tou or v2g-rules for such prices",
            file=prices_file,
            row=k + 2,
            field="export_price_cny_per_kwh",
        )


def _time(epoch_s: int, grid: TimeGrid) -> str:
    """An instant in the UTC offset of the grid's start, ISO 8601."""
    return datetime.fromtimestamp(epoch_s, tz=grid.start.tzinfo).isoformat()


def _row(session_rows: Sequence[int] | IntArray, i: int) -> int:
    """The file row of data row ``i``: as the loader read it, else ``i + 2``."""
    return int(session_rows[i]) if i < len(session_rows) else i + 2


def _outside(fleet: Fleet, grid: TimeGrid) -> BoolArray:
    """Per session: its stay lies entirely before or after the grid."""
    end_s = grid.start_s + grid.step_s * grid.length
    return np.asarray((fleet.departure_s <= grid.start_s) | (fleet.arrival_s >= end_s))


def _steps(fleet: Fleet, grid: TimeGrid) -> tuple[IntArray, IntArray, BoolArray]:
    """Each session's plugged steps, and whether it has none within the grid."""
    arrival_step, departure_step = grid.plugged_steps(fleet.arrival_s, fleet.departure_s)
    return arrival_step, departure_step, (departure_step <= arrival_step) | _outside(fleet, grid)


def _check_overlap(
    fleet: Fleet, grid: TimeGrid, sessions_file: Path, session_rows: Sequence[int] | IntArray
) -> None:
    """A session that overlaps the grid must lie within it; the first faulty row raises
    (within a row: arrival, then departure). Sessions entirely outside are let through."""
    end_s = grid.start_s + grid.step_s * grid.length
    overlaps = (fleet.departure_s > grid.start_s) & (fleet.arrival_s < end_s)
    early = overlaps & (fleet.arrival_s < grid.start_s)
    late = overlaps & (fleet.departure_s > end_s)
    bad = np.flatnonzero(early | late)
    if not bad.size:
        return
    i = int(bad[0])
    label = repr(fleet.label(i))
    if early[i]:
        raise InputError(
            f"session {label} arrives at {_time(int(fleet.arrival_s[i]), grid)}, "
            f"before the first price step starts ({grid.start.isoformat()})",
            file=sessions_file,
            row=_row(session_rows, i),
            field="arrival",
        )
    raise InputError(
        f"session {label} leaves at {_time(int(fleet.departure_s[i]), grid)}, "
        f"after the last price step ends ({grid.end.isoformat()})",
        file=sessions_file,
        row=_row(session_rows, i),
        field="departure",
    )


SHORT_REASON = "plugged for less than one whole step"
OUTSIDE_REASON = "entirely outside the price steps"


@dataclass(frozen=True)
class SessionsWithoutStep:
    """The sessions of a file that get no whole price step, planned at zero power.

    Attributes
    ----------
    index
        Their data rows in the file (indices into the fleet), in file order.
    outside
        Per such session: entirely outside the prices (else within them, shorter than a
        step).
    unavoidable_kwh
        What each needed at departure and cannot get, kWh:
        ``max(target_energy - arrival_energy, 0)``.
    rows
        Their rows in the file (header = row 1).
    """

    index: IntArray
    outside: BoolArray
    unavoidable_kwh: FloatArray
    rows: IntArray

    @property
    def count(self) -> int:
        """How many sessions get no step."""
        return int(self.index.size)

    def warning(self, *, fleet: Fleet, grid: TimeGrid, sessions_file: Path) -> str | None:
        """One line counting them by reason, with the first of each, and their need."""
        if not self.count:
            return None
        parts = []
        for outside, what in (
            (False, f"plugged for less than one {grid.step_s / SECONDS_PER_MINUTE:g}-min step"),
            (True, f"{OUTSIDE_REASON} ({grid.start.isoformat()} to {grid.end.isoformat()})"),
        ):
            which = np.flatnonzero(self.outside == outside)
            if which.size:
                k = int(which[0])
                i = int(self.index[k])
                parts.append(
                    f"{which.size:,} {what}, first on row {int(self.rows[k])}: "
                    f"{fleet.label(i)!r} {_time(int(fleet.arrival_s[i]), grid)} to "
                    f"{_time(int(fleet.departure_s[i]), grid)}"
                )
        sessions = "1 session gets" if self.count == 1 else f"{self.count:,} sessions get"
        need_kwh = round(float(self.unavoidable_kwh.sum()), 3)
        return (
            f"{sessions_file}: {sessions} no whole price step ({'; '.join(parts)}): "
            f"planned at zero power, {need_kwh:g} kWh of need unavoidable"
        )

    def add_to_summary(
        self, summary: dict[str, Any], *, session_ids: npt.NDArray[np.str_]
    ) -> dict[str, Any]:
        """``summary`` (of the planned sessions) with these sessions counted in: in
        ``sessions``, ``unmet_energy_kwh`` and ``sessions_short``, and one entry each in
        ``sessions_without_step`` (id, row, reason, unavoidable kWh)."""
        entries = [
            {
                "session_id": str(session_id),
                "row": row,
                "reason": OUTSIDE_REASON if outside else SHORT_REASON,
                "unavoidable_kwh": round(need, 6),
            }
            # One iteration per session without a step, at the output's edge.
            for session_id, row, outside, need in zip(
                session_ids[self.index].tolist(),
                self.rows.tolist(),
                self.outside.tolist(),
                self.unavoidable_kwh.tolist(),
                strict=True,
            )
        ]
        unmet = float(summary.get("unmet_energy_kwh", 0.0)) + float(self.unavoidable_kwh.sum())
        return summary | {
            "sessions": int(summary.get("sessions", 0)) + self.count,
            "unmet_energy_kwh": round(unmet, 6),
            "sessions_short": int(summary.get("sessions_short", 0))
            + int(np.count_nonzero(self.unavoidable_kwh > 0)),
            "sessions_without_step": entries,
        }


def sessions_without_step(
    *, fleet: Fleet, grid: TimeGrid, session_rows: Sequence[int] | IntArray = ()
) -> SessionsWithoutStep:
    """The sessions of ``fleet`` that :func:`day_ahead_problem` leaves out: no whole step of
    ``grid`` lies within their stay. Rows as in :func:`day_ahead_problem`."""
    _, _, without_step = _steps(fleet, grid)
    index = np.flatnonzero(without_step).astype(np.int64)
    need_kwh = fleet.target_energy_kwh[index] - fleet.energy_arrival_kwh[index]
    given = np.asarray(session_rows, dtype=np.int64)
    rows = index + 2
    if given.size:
        known = index < given.size
        rows[known] = given[index[known]]
    return SessionsWithoutStep(
        index=index,
        outside=_outside(fleet, grid)[index],
        unavoidable_kwh=np.maximum(need_kwh, 0.0),
        rows=rows,
    )


def case_day_ahead_problem(case: CityCase, *, horizon_steps: int | None = None) -> Problem:
    """A twin case's whole fleet as one day-ahead problem over the case's grid.

    Prices, period kinds, base load and surplus come from the case (its tariff in local
    time). With ``horizon_steps`` the problem ends after that many steps: sessions still
    plugged then leave at the horizon and those arriving after it are left out. Sessions
    shorter than one whole step are left out too (they get no step).
    """
    grid = case.grid
    if horizon_steps is not None:
        grid = grid.sub_grid(0, min(horizon_steps, grid.length))
    arrival, departure = grid.plugged_steps(case.fleet.arrival_s, case.fleet.departure_s)
    departure = np.minimum(departure, grid.length)
    keep = np.flatnonzero(departure > arrival)
    fleet = case.fleet.take(keep)
    prices = case.tariff.price_levels(grid)
    steps = grid.length
    return _fleet_problem(
        grid=grid,
        fleet=fleet,
        sites=case.sites,
        vehicle_index=keep.astype(np.int64),
        arrival_step=arrival[keep],
        departure_step=departure[keep],
        import_price_cny_per_kwh=prices.import_series(),
        export_price_cny_per_kwh=prices.export_series(),
        period_kind=prices.kind.copy(),
        base_load_kw=case.signals.base_load_kw[:steps].copy(),
        renewable_surplus_kw=case.signals.renewable_surplus_kw[:steps].copy(),
        degradation_cny_per_kwh=(
            case.degradation[keep]
            if isinstance(case.degradation_cny_per_kwh, np.ndarray)
            else case.degradation_cny_per_kwh
        ),
    )


def _fleet_problem(
    *,
    grid: TimeGrid,
    fleet: Fleet,
    sites: SiteLimits,
    vehicle_index: IntArray,
    arrival_step: IntArray,
    departure_step: IntArray,
    import_price_cny_per_kwh: FloatArray,
    export_price_cny_per_kwh: FloatArray,
    period_kind: npt.NDArray[np.int8],
    base_load_kw: FloatArray,
    renewable_surplus_kw: FloatArray,
    degradation_cny_per_kwh: float | FloatArray,
) -> Problem:
    """Every session of ``fleet`` as a vehicle of one whole-horizon problem on ``grid``."""
    return Problem(
        grid=grid,
        control_steps=grid.length,
        vehicle_index=vehicle_index,
        site_index=fleet.site_index.copy(),
        energy_kwh=fleet.energy_arrival_kwh.copy(),
        energy_min_kwh=fleet.energy_min_kwh.copy(),
        energy_max_kwh=fleet.energy_max_kwh.copy(),
        target_energy_kwh=fleet.target_energy_kwh.copy(),
        max_charge_kw=fleet.max_charge_kw.copy(),
        max_discharge_kw=fleet.discharge_limit_kw.copy(),
        charge_efficiency=fleet.charge_efficiency.copy(),
        discharge_efficiency=fleet.discharge_efficiency.copy(),
        departure_step=departure_step,
        arrival_step=arrival_step,
        import_limit_kw=sites.import_limit_kw.copy(),
        export_limit_kw=sites.export_limit_kw.copy(),
        import_price_cny_per_kwh=import_price_cny_per_kwh,
        export_price_cny_per_kwh=export_price_cny_per_kwh,
        period_kind=period_kind,
        base_load_kw=base_load_kw,
        renewable_surplus_kw=renewable_surplus_kw,
        degradation_cny_per_kwh=degradation_cny_per_kwh,
    )
