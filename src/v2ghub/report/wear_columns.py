"""Battery wear in the run's tables: the sessions' wear columns and the totals' names.

``sessions.parquet`` gains, per session: ``mean_soc`` (the day's time-weighted mean SoC),
``calendar_fade_kwh``, ``cycle_fade_kwh`` and ``capacity_fade_kwh`` (their sum: kWh of
battery capacity lost over the day), ``v2g_fade_kwh`` (the part of the cycle fade due to
discharging), ``v2g_fade_value_fen`` (what that fade is worth) and ``v2g_payment_fen``
(what the discharge earned at the export prices), money in integer fen as ``bill_fen``.
:mod:`v2ghub.sim.wear` says how each is made.
"""

from __future__ import annotations

import pyarrow as pa

from v2ghub.scenarios.ageing_data import ageing_model
from v2ghub.sim.metrics import RunResult
from v2ghub.sim.wear import WearTotals, session_wear

WEAR_TOTALS = tuple(WearTotals.__annotations__)
"""The wear metrics of ``summary.json`` that add up over cities."""


def wear_columns(result: RunResult) -> dict[str, pa.Array]:
    """The wear columns of one run's sessions table."""
    wear = result.wear if result.wear is not None else session_wear(result.run, ageing_model())
    return {
        "mean_soc": pa.array(wear.mean_soc),
        "calendar_fade_kwh": pa.array(wear.calendar_fade_kwh),
        "cycle_fade_kwh": pa.array(wear.cycle_fade_kwh),
        "capacity_fade_kwh": pa.array(wear.capacity_fade_kwh),
        "v2g_fade_kwh": pa.array(wear.v2g_fade_kwh),
        "v2g_fade_value_fen": pa.array(wear.v2g_fade_value_fen),
        "v2g_payment_fen": pa.array(wear.v2g_payment_fen),
    }
