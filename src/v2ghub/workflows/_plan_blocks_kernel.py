"""Compiled copies between a plan's dense blocks and its plugged steps
(:class:`v2ghub.workflows.plan_blocks.PluggedPlan`): one slice per vehicle, where NumPy
would build index arrays as long as the block's plugged steps."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from numba import njit

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@njit(cache=True)
def keep_plugged(  # noqa: PLR0917 - a compiled kernel takes its arrays positionally
    block_kw: FloatArray,
    rows: IntArray,
    arrival_step: IntArray,
    departure_step: IntArray,
    offsets: IntArray,
    plugged_kw: FloatArray,
) -> None:
    """Copy row ``k`` of ``block_kw`` in vehicle ``rows[k]``'s plugged steps
    (``arrival_step .. departure_step - 1``) to that vehicle's run of ``plugged_kw``,
    which starts at ``offsets[rows[k]]``."""
    for k in range(rows.size):
        i = rows[k]
        start = offsets[i]
        for t in range(arrival_step[i], departure_step[i]):
            plugged_kw[start + t - arrival_step[i]] = block_kw[k, t]


@njit(cache=True)
def dense_rows(  # noqa: PLR0917 - a compiled kernel takes its arrays positionally
    first: int,
    arrival_step: IntArray,
    departure_step: IntArray,
    offsets: IntArray,
    plugged_kw: FloatArray,
    block_kw: FloatArray,
) -> None:
    """Fill row ``k`` of ``block_kw`` with vehicle ``first + k``'s plan: its plugged steps,
    zeros in every other step (every value written, so ``block_kw`` may come uninitialised).
    Step by step, as a column-major ``block_kw`` lies in memory."""
    for t in range(block_kw.shape[1]):
        for k in range(block_kw.shape[0]):
            i = first + k
            if arrival_step[i] <= t < departure_step[i]:
                block_kw[k, t] = plugged_kw[offsets[i] + t - arrival_step[i]]
            else:
                block_kw[k, t] = 0.0
