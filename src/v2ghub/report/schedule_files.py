"""The files of ``v2ghub plan``: ``schedule.csv`` and the summary, written atomically.

``schedule.csv`` has one row per session and step it is plugged for, in the sessions'
order and then in time order::

    session_id,start,power_kw
    home-001,2025-07-16T19:00:00+08:00,7.0000

``start`` is the step's start in the UTC offset the prices file wrote it in (so across a
daylight-saving change the offset changes where the file's does);
``power_kw`` is the charger power in kW to 0.1 W (4 decimals), + charging, - discharging.

The summary prices the schedule as written, so that anyone can recompute it from
``schedule.csv``. Each written power ``p`` (kW, 4 decimals) is metered over its step as
integer Wh, charging and discharging apart, rounded half away from zero in integer
arithmetic (``p * dt_h * 1000`` exactly, with no float in between; the rule of
:func:`~v2ghub.settlement.money.energy_wh`). A session's Wh are summed per distinct price
and billed with :func:`~v2ghub.settlement.money.bills_fen`: each session's energy cost and
its export revenue rounded once to the fen, the totals their sums. Battery wear is the
discharged energy times the degradation price, and the peak cost the peak price times the
peak (kW, as reported), each rounded once to the fen; the objective adds them up:

    objective = energy_cost - export_revenue + degradation_cost + peak_cost

The unmet energy comes from the plan itself (full precision): rounding powers to 0.1 W
moves a session's final energy by at most 0.05 W times its plugged hours.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
from collections.abc import Sequence
from datetime import timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol, TextIO

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from v2ghub.files import atomic_text, json_object_with, starts_with_line
from v2ghub.model.problem import Problem
from v2ghub.model.time_grid import TimeGrid
from v2ghub.planning.objective import final_energy_kwh
from v2ghub.report._schedule_text_kernel import schedule_rows_bytes
from v2ghub.report._summary_kernel import meter_block, written_kw
from v2ghub.scenarios.prices_csv import PriceSeries
from v2ghub.settlement.money import bills_fen, fen_to_cny, round_fen
from v2ghub.units import SECONDS_PER_HOUR, SECONDS_PER_MINUTE, WH_PER_KWH

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
ByteArray = npt.NDArray[np.uint8]

__all__ = [
    "POWER_DECIMALS",
    "POWER_UNITS_PER_KW",
    "SCHEDULE_COLUMNS",
    "PlanRows",
    "atomic_text",  # its home is v2ghub.files; kept here for the callers that import it here
    "format_power",
    "is_plan_summary",
    "is_schedule_csv",
    "metered_wh",
    "plan_summary",
    "plugged_pairs",
    "start_texts",
    "vehicle_blocks",
    "write_schedule_csv",
    "write_schedule_rows",
    "write_summary",
    "write_summary_json",
    "written_power",
]

SCHEDULE_COLUMNS = ("session_id", "start", "power_kw")
POWER_DECIMALS = 4
"""Decimals of ``power_kw`` in ``schedule.csv`` (0.1 W)."""
POWER_UNITS_PER_KW = 10**POWER_DECIMALS
"""Written powers are whole units of 1e-4 kW (0.1 W)."""
_UNIT_SECONDS_PER_WH = SECONDS_PER_HOUR * POWER_UNITS_PER_KW // WH_PER_KWH
"""One Wh is this many (0.1 W units x seconds): 36,000."""
SHORTFALL_TOLERANCE_KWH = 1e-6
"""A session ending this close below its target counts as served (solver round-off)."""
PEAK_DECIMALS = 4
"""Decimals of ``peak_kw`` in the summary; the peak cost uses the value as reported."""
BLOCK_VALUES = 1 << 20
"""Values (vehicles x steps) worked on at once when writing a plan: 8 MB of float64."""
SUMMARY_KEYS = ("planner", "sessions", "steps", "objective_cny")
"""Keys by which an existing file is recognised as a plan summary (it may be replaced)."""


class PlanRows(Protocol):
    """A plan kept other than as one array (e.g. each vehicle's plugged steps only), read
    a block of vehicles at a time: what :func:`write_schedule_rows` and
    :func:`plan_summary` take in place of the array."""

    @property
    def shape(self) -> tuple[int, int]:
        """(vehicles, steps)."""
        ...

    def rows(self, first: int, last: int) -> FloatArray:
        """Power (kW) of vehicles ``first .. last - 1``, ``(last - first, steps)``."""
        ...


def _rows(power_kw: FloatArray | PlanRows, first: int, last: int) -> FloatArray:
    """Vehicles ``first .. last - 1`` of a plan, an array or :class:`PlanRows`."""
    return power_kw[first:last] if isinstance(power_kw, np.ndarray) else power_kw.rows(first, last)


is_schedule_csv = starts_with_line(",".join(SCHEDULE_COLUMNS))
"""Whether a file's first bytes are a ``schedule.csv`` header (an earlier plan's file)."""
is_plan_summary = json_object_with(SUMMARY_KEYS)
"""Whether a file's first bytes are a plan summary (an earlier plan's file)."""


def plugged_pairs(problem: Problem) -> tuple[IntArray, IntArray]:
    """Every (vehicle, step) a vehicle is plugged for, vehicle by vehicle, steps in order.

    Returns
    -------
    (vehicle, step)
        Two arrays of length ``sum(departure_step - arrival_step)``.
    """
    steps = (problem.departure_step - problem.arrival_step).astype(np.int64)
    vehicle = np.repeat(np.arange(problem.n_vehicles, dtype=np.int64), steps)
    first_pair = np.cumsum(steps) - steps
    pair = np.arange(int(steps.sum()), dtype=np.int64)
    step = pair - first_pair[vehicle] + problem.arrival_step[vehicle]
    return vehicle, np.asarray(step, dtype=np.int64)


def written_power(power_kw: FloatArray) -> IntArray:
    """Power as ``schedule.csv`` shows it: whole units of 1e-4 kW (0.1 W), nearest."""
    return np.asarray(np.rint(power_kw * POWER_UNITS_PER_KW), dtype=np.int64)


def format_power(units: int) -> str:
    """``70000`` -> ``"7.0000"``: a written power in kW, exactly, never ``-0.0000``."""
    sign = "-" if units < 0 else ""
    whole, fraction = divmod(abs(units), POWER_UNITS_PER_KW)
    return f"{sign}{whole}.{fraction:0{POWER_DECIMALS}d}"


def metered_wh(power_units: IntArray, *, step_s: int) -> IntArray:
    """Integer Wh of each step at each written power, rounded half away from zero.

    ``Wh = power_units * 1e-4 kW * step_s / 3600 s/h * 1000 Wh/kWh
    = power_units * step_s / 36000``, computed in integers, so exactly.
    """
    twice = 2 * np.abs(power_units) * step_s + _UNIT_SECONDS_PER_WH
    magnitude = twice // (2 * _UNIT_SECONDS_PER_WH)
    return np.asarray(np.sign(power_units) * magnitude, dtype=np.int64)


def start_texts(grid: TimeGrid, utc_offsets_s: Sequence[int] | None = None) -> list[str]:
    """Each step's start as ISO 8601 text, in its own UTC offset (s east of UTC) if given,
    else in ``grid.start``'s: the same instants a prices file named, written as it did."""
    starts = grid.step_starts()
    if utc_offsets_s is None:
        return [t.isoformat() for t in starts]
    zones = {s: timezone(timedelta(seconds=s)) for s in set(utc_offsets_s)}
    return [t.astimezone(zones[s]).isoformat() for t, s in zip(starts, utc_offsets_s, strict=True)]


def write_schedule_rows(
    handle: TextIO,
    *,
    problem: Problem,
    power_kw: FloatArray | PlanRows,
    session_ids: Sequence[str] | npt.NDArray[np.str_],
    grid: TimeGrid,
    utc_offsets_s: Sequence[int] | None = None,
) -> int:
    """Write the header and one row per plugged (session, step) to ``handle``.

    The rows are made a block of vehicles at a time, as bytes (compiled), and written to
    the handle's binary buffer when it has one and writes UTF-8; the text is exactly what
    :mod:`csv` writes (a field holding a delimiter, a quote or a line end is quoted, its
    quotes doubled), with powers as :func:`format_power` writes them.

    Parameters
    ----------
    handle
        An open text file (newline translation off, as :mod:`csv` wants).
    problem
        The planned problem; its plugged steps select the rows.
    power_kw
        Charger power, kW, shape ``(n_vehicles, grid.length)``; + charging (an array or
        :class:`PlanRows`).
    session_ids
        Id of each vehicle's session.
    grid
        The steps.
    utc_offsets_s
        The UTC offset to write each step's start in, s east of UTC (the prices file's:
        :attr:`PriceSeries.utc_offsets_s`); ``None``: all in ``grid.start``'s.

    Returns
    -------
    int
        Number of data rows written.
    """
    if power_kw.shape != (problem.n_vehicles, grid.length):
        raise ValueError(
            f"power_kw must have shape ({problem.n_vehicles}, {grid.length}), got {power_kw.shape}"
        )
    if len(session_ids) != problem.n_vehicles:
        raise ValueError(f"need {problem.n_vehicles} session ids, got {len(session_ids)}")
    id_bytes, id_offsets = _csv_fields(session_ids)
    start_bytes, start_offsets = _csv_fields(start_texts(grid, utc_offsets_s))
    arrival_step = np.ascontiguousarray(problem.arrival_step, dtype=np.int64)
    departure_step = np.ascontiguousarray(problem.departure_step, dtype=np.int64)
    handle.write(",".join(SCHEDULE_COLUMNS) + "\n")
    for first, last in vehicle_blocks(problem.n_vehicles, grid.length):
        units = np.ascontiguousarray(written_power(_rows(power_kw, first, last)))
        rows = schedule_rows_bytes(
            units,
            first,
            arrival_step,
            departure_step,
            id_bytes,
            id_offsets,
            start_bytes,
            start_offsets,
        )
        _write_bytes(handle, rows)
    return int((departure_step - arrival_step).sum())


def vehicle_blocks(n_vehicles: int, n_steps: int) -> list[tuple[int, int]]:
    """Consecutive ``(first, last)`` vehicle ranges of about :data:`BLOCK_VALUES` values
    (vehicles x steps) each: what is worked on at once, so that no temporary grows with
    the fleet (2 million vehicles x 144 steps of float64 are 2.3 GB)."""
    size = max(1, BLOCK_VALUES // max(n_steps, 1))
    return [(first, min(first + size, n_vehicles)) for first in range(0, n_vehicles, size)]


def _quoted_characters() -> str:
    """The characters that make :mod:`csv` quote a field (its default dialect, lines ended
    by ``\\n``), asked of the running Python (versions differ on ``\\r``)."""
    found = ""
    for character in ',"\r\n':
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerow((f"a{character}b", "c"))
        if out.getvalue().startswith('"'):
            found += character
    return found


_QUOTED_CHARACTERS = _quoted_characters()


def _csv_fields(values: Sequence[str] | npt.NDArray[np.str_]) -> tuple[ByteArray, IntArray]:
    """``values`` as :mod:`csv` writes them as fields, UTF-8: one byte array and the
    offsets of each field in it (``len(values) + 1``)."""
    texts = pa.array(values, type=pa.large_string())
    needs = pa.array(np.zeros(len(texts), dtype=np.bool_))
    for character in _QUOTED_CHARACTERS:
        needs = pc.or_(needs, pc.match_substring(texts, character))
    if pc.any(needs).as_py():
        quote = pa.scalar('"', pa.large_string())
        doubled = pc.replace_substring(texts, '"', '""')
        quoted = pc.binary_join_element_wise(
            quote, doubled, quote, pa.scalar("", pa.large_string())
        )
        texts = pc.if_else(needs, quoted, texts)
    offsets = np.frombuffer(texts.buffers()[1], dtype=np.int64)
    offsets = offsets[texts.offset : texts.offset + len(texts) + 1]
    data = texts.buffers()[2]
    values_bytes = (
        np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, np.uint8)
    )
    return values_bytes, np.ascontiguousarray(offsets)


def _write_bytes(handle: TextIO, data: ByteArray) -> None:
    """Append UTF-8 ``data`` to a text handle: straight to its binary buffer when it has
    one and writes UTF-8, else decoded."""
    binary = getattr(handle, "buffer", None)
    encoding = getattr(handle, "encoding", None)
    if binary is not None and encoding is not None and codecs.lookup(encoding).name == "utf-8":
        handle.flush()
        binary.write(data.data)
    else:
        handle.write(data.tobytes().decode("utf-8"))


def write_schedule_csv(
    path: Path,
    *,
    problem: Problem,
    power_kw: FloatArray,
    session_ids: Sequence[str] | npt.NDArray[np.str_],
    grid: TimeGrid,
    utc_offsets_s: Sequence[int] | None = None,
) -> int:
    """Write ``schedule.csv`` atomically (see :func:`write_schedule_rows`); returns the rows."""
    with atomic_text(path) as handle:
        return write_schedule_rows(
            handle,
            problem=problem,
            power_kw=power_kw,
            session_ids=session_ids,
            grid=grid,
            utc_offsets_s=utc_offsets_s,
        )


def write_summary(handle: TextIO, summary: dict[str, Any]) -> None:
    """Write the summary (from :func:`plan_summary`) as indented JSON to ``handle``."""
    handle.write(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")


def write_summary_json(path: Path, summary: dict[str, Any]) -> None:
    """Write the summary as indented JSON, atomically."""
    with atomic_text(path) as handle:
        write_summary(handle, summary)


def _price_levels(prices: Sequence[Decimal]) -> tuple[IntArray, tuple[Decimal, ...]]:
    """Each step's index among the distinct prices (in order of first appearance), and
    those prices."""
    levels: dict[Decimal, int] = {}
    # One Python iteration per step (hundreds), never per vehicle.
    level = np.array([levels.setdefault(p, len(levels)) for p in prices], dtype=np.int64)
    return level, tuple(levels)


def _by_level(energy_wh_per_step: IntArray, step_level: IntArray, n_levels: int) -> IntArray:
    """Per vehicle, the Wh at each price level: ``(n_vehicles, n_steps)`` ->
    ``(n_vehicles, n_levels)``, exactly (integers)."""
    one_hot = np.zeros((step_level.size, n_levels), dtype=np.int64)
    one_hot[np.arange(step_level.size), step_level] = 1
    return np.asarray(energy_wh_per_step @ one_hot, dtype=np.int64)


def _cost_fen(wh_by_level: IntArray, prices: tuple[Decimal, ...]) -> int:
    """Sum over vehicles of each vehicle's cost of ``wh_by_level`` at ``prices``, in fen."""
    bills = bills_fen(
        import_wh=wh_by_level,
        export_wh=np.zeros_like(wh_by_level),
        import_price_cny_per_kwh=prices,
        export_price_cny_per_kwh=prices,
    )
    return int(bills.sum())


def _metered_block(
    problem: Problem,
    block_kw: FloatArray,
    *,
    first_vehicle: int,
    import_level: tuple[IntArray, int],
    export_level: tuple[IntArray, int],
) -> tuple[IntArray, IntArray, FloatArray]:
    """Of vehicles ``first_vehicle ..``: their metered import and export Wh per price
    level (each ``(step_level, n_levels)``) and their final stored energy, kWh."""
    step_s = problem.grid.step_s
    rows, steps = block_kw.shape
    if block_kw.dtype != np.float64:  # the NumPy expressions themselves, at any precision
        written = written_power(block_kw)
        charged = metered_wh(np.maximum(written, 0), step_s=step_s)
        discharged = metered_wh(np.maximum(-written, 0), step_s=step_s)
        return (
            _by_level(charged, *import_level),
            _by_level(discharged, *export_level),
            final_energy_kwh(problem, block_kw, first_vehicle=first_vehicle),
        )
    import_wh = np.zeros((rows, import_level[1]), dtype=np.int64)
    export_wh = np.zeros((rows, export_level[1]), dtype=np.int64)
    stored_kwh = np.empty((rows, steps))  # row-major, as NumPy's where() makes it
    meter_block(
        block_kw,
        first_vehicle,
        import_level[0],
        export_level[0],
        step_s,
        np.ascontiguousarray(problem.arrival_step, dtype=np.int64),
        np.ascontiguousarray(problem.departure_step, dtype=np.int64),
        np.ascontiguousarray(problem.charge_efficiency, dtype=np.float64),
        np.ascontiguousarray(problem.discharge_efficiency, dtype=np.float64),
        float(problem.dt_h),
        import_wh,
        export_wh,
        stored_kwh,
    )
    # Each row summed by NumPy as final_energy_kwh sums it (pairwise along the row).
    energy_kwh = problem.energy_kwh[first_vehicle : first_vehicle + rows]
    return import_wh, export_wh, np.asarray(energy_kwh + stored_kwh.sum(axis=1))


def _written_fleet_kw(power_kw: FloatArray | PlanRows) -> FloatArray:
    """Per step, the fleet's written power (kW): the value, to the last bit, of
    ``(written_power(power_kw) / POWER_UNITS_PER_KW).sum(axis=0)``, without its temporaries
    of the schedule's size.

    NumPy sums the columns of a column-major array pairwise, one column at a time, and the
    rows of a row-major one in turn; so the first is summed here column by column and the
    second a block of rows at a time, each block added after the sum so far. A
    :class:`PlanRows` is summed a block of rows at a time, each block's column pairwise
    (the whole plan's sum to within rounding, as the blocks are added up).
    """
    n, steps = power_kw.shape
    if not isinstance(power_kw, np.ndarray):
        total_kw = np.zeros(steps)
        for first, last in vehicle_blocks(n, steps):
            block_kw = np.asfortranarray(power_kw.rows(first, last), dtype=np.float64)
            column_kw = np.empty(last - first)
            for t in range(steps):  # steps, never vehicles
                written_kw(block_kw[:, t], column_kw)
                total_kw[t] += column_kw.sum()
        return total_kw
    if power_kw.flags.f_contiguous:
        column_kw = np.empty(n)
        total_kw = np.zeros(steps)
        for t in range(steps):  # steps, never vehicles
            if power_kw.dtype == np.float64:
                written_kw(power_kw[:, t], column_kw)
            else:
                column_kw = written_power(power_kw[:, t]).astype(np.float64) / POWER_UNITS_PER_KW
            total_kw[t] = column_kw.sum()
        return total_kw
    total_kw = np.zeros(steps)
    for first, last in vehicle_blocks(n, steps):
        block_kw = (
            written_power(_rows(power_kw, first, last)).astype(np.float64) / POWER_UNITS_PER_KW
        )
        total_kw = np.add.reduce(np.concatenate((total_kw[None, :], block_kw)), axis=0)
    return np.asarray(total_kw, dtype=np.float64)


def _end_text(grid: TimeGrid, utc_offsets_s: Sequence[int] | None) -> str:
    """The end of the last step, in the offset the file wrote that step's start in."""
    if utc_offsets_s is None:
        return grid.end.isoformat()
    return grid.end.astimezone(timezone(timedelta(seconds=utc_offsets_s[-1]))).isoformat()


def _decimal(value: float) -> Decimal:
    """The shortest decimal that reads back as ``value`` (``0.2``, not 0.2000000000000000111)."""
    return Decimal(repr(float(value)))


def plan_summary(
    *,
    problem: Problem,
    power_kw: FloatArray | PlanRows,
    prices: PriceSeries,
    planner: str,
    solve_seconds: float,
    peak_price_cny_per_kw: float = 0.0,
) -> dict[str, Any]:
    """What a plan costs, exactly, and what it delivers (rules in the module docstring).

    Parameters
    ----------
    problem
        The planned problem (float prices, degradation in CNY/kWh discharged).
    power_kw
        Charger power, kW, ``(n_vehicles, n_steps)``; + charging, - discharging (an array
        or :class:`PlanRows`).
    prices
        The exact prices of ``problem``'s steps, CNY/kWh.
    planner
        The planner's name.
    solve_seconds
        Wall-clock time the planner took, s.
    peak_price_cny_per_kw
        Price of the peak of base load plus fleet load, CNY/kW; 0 for none.

    Returns
    -------
    dict
        ``planner``, ``sessions``, ``steps``, ``step_minutes``, ``energy_charged_kwh``,
        ``energy_discharged_kwh``, ``energy_cost_cny``, ``export_revenue_cny``,
        ``degradation_cost_cny``, ``peak_kw``, ``peak_cost_cny``, ``objective_cny``,
        ``unmet_energy_kwh``, ``sessions_short``, ``solve_seconds``, and the prices used
        (``degradation_cny_per_kwh``, ``peak_price_cny_per_kw``). Money is a decimal
        string to the fen.
    """
    if isinstance(power_kw, np.ndarray) and not (
        power_kw.flags.c_contiguous or power_kw.flags.f_contiguous
    ):
        power_kw = np.array(power_kw, order="K")  # the layout NumPy's own results take
    import_level, import_levels = _price_levels(prices.import_price_cny_per_kwh)
    export_level, export_levels = _price_levels(prices.export_price_cny_per_kwh)
    import_fen = export_fen = charged_wh = total_discharged_wh = 0
    final_kwh = np.empty(problem.n_vehicles)
    # A block of vehicles at a time: every figure is a sum over vehicles of integers, or
    # per vehicle, so the blocks add up to exactly what the whole schedule gives at once.
    for first, last in vehicle_blocks(problem.n_vehicles, problem.grid.length):
        import_wh, export_wh, final_kwh[first:last] = _metered_block(
            problem,
            _rows(power_kw, first, last),
            first_vehicle=first,
            import_level=(import_level, len(import_levels)),
            export_level=(export_level, len(export_levels)),
        )
        import_fen += _cost_fen(import_wh, import_levels)
        export_fen += _cost_fen(export_wh, export_levels)
        charged_wh += int(import_wh.sum())
        total_discharged_wh += int(export_wh.sum())
    energy_cost = fen_to_cny(import_fen)
    export_revenue = fen_to_cny(export_fen)
    # A day-ahead plan prices wear at one rate; a per-vehicle rate is written as its highest.
    rate = problem.degradation_cny_per_kwh
    degradation = _decimal(rate if isinstance(rate, float) else float(rate.max(initial=0.0)))
    degradation_cost = round_fen(Decimal(total_discharged_wh) * degradation / WH_PER_KWH)

    # The peak of base load plus the written plan, as schedule_cost reports it.
    steps = power_kw.shape[1]
    fleet_kw = _written_fleet_kw(power_kw)
    highest_kw = float(np.max(problem.base_load_kw[:steps] + fleet_kw)) if steps else 0.0
    peak_kw = round(highest_kw, PEAK_DECIMALS) + 0.0
    peak_price = _decimal(peak_price_cny_per_kw)
    peak_cost = round_fen(peak_price * Decimal(f"{peak_kw:.{PEAK_DECIMALS}f}"))
    objective = round_fen(energy_cost - export_revenue + degradation_cost + peak_cost)

    short_kwh = np.maximum(problem.target_energy_kwh - final_kwh, 0.0)
    short_kwh = np.where(short_kwh > SHORTFALL_TOLERANCE_KWH, short_kwh, 0.0)
    step_minutes = problem.grid.step_s / SECONDS_PER_MINUTE
    return {
        "planner": planner,
        "sessions": problem.n_vehicles,
        "steps": problem.grid.length,
        "step_minutes": int(step_minutes) if step_minutes.is_integer() else step_minutes,
        "start": start_texts(problem.grid, prices.utc_offsets_s)[0],
        "end": _end_text(problem.grid, prices.utc_offsets_s),
        "energy_charged_kwh": charged_wh / WH_PER_KWH,
        "energy_discharged_kwh": total_discharged_wh / WH_PER_KWH,
        "energy_cost_cny": str(energy_cost),
        "export_revenue_cny": str(export_revenue),
        "degradation_cost_cny": str(degradation_cost),
        "peak_kw": peak_kw,
        "peak_cost_cny": str(peak_cost),
        "objective_cny": str(objective),
        "unmet_energy_kwh": round(float(short_kwh.sum()), 6),
        "sessions_short": int(np.count_nonzero(short_kwh)),
        "solve_seconds": round(solve_seconds, 6),
        "degradation_cny_per_kwh": str(degradation),
        "peak_price_cny_per_kw": str(peak_price),
    }
