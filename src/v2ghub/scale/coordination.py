"""What couples a city's shards, and the rounds that reconcile them.

Shards (:mod:`v2ghub.scenarios.shards`) hold whole sites, so site limits never couple
them, and the rule planners (uncontrolled, tou, v2g-rules) plan each vehicle from its own
state and prices: their shards are independent and run once. A planner that prices the
area's peak (``capabilities.peak_price``: mpc, fast, lp) minimises, besides energy cost,

    V * max_t ( b[t] + sum_s x_s[t] )                                           (1)

with ``b`` the city's base load, ``x_s`` shard ``s``'s net fleet load (kW per step) and
``V`` the peak price (CNY/kW). A shard plans only its ``x_s`` and sees, in place of ``b``,
a *context* ``c_s`` (its case's ``base_load_kw``); it prices ``V * max_t (c_s[t] +
x_s[t])``. The rounds choose the contexts:

Round 0, the proportional split (no exchange). With ``n_s`` of the city's ``N`` sessions,

    c_s^0 = b * n_s / N.                                                        (2)

Blocks are drawn from the same distributions, so their loads have the same shape and
``sum_s (c_s^0 + x_s) = b + sum_s x_s``: each shard shaves its share of the city's
peak, and where the shards' peaks fall on the same steps the sum of the shards' terms is
(1).

Rounds r = 1..R, damped Jacobi (optional). Each shard re-plans its day against the base
load plus the others' loads of the previous round, damped by ``theta``:

    y_s^0 = x_s^0,      y_s^r = theta * x_s^r + (1 - theta) * y_s^(r-1)            (3)
    c_s^r = b + sum_{j != s} y_j^(r-1)                                          (4)

so ``V`` prices exactly what shard ``s`` adds to the city's peak when the others hold.
But the others do not hold: in a Jacobi round every shard answers the others' previous
plans at once, all move their charging off the same steps into the same valley, and the
executed plans (a shard's simulated day cannot be mixed afterwards; the damping only
smooths what the shards see) overshoot. A shard also sees the others' loads over its
whole day, so it knows their future arrivals, which an unsharded run's planner does not.

Measured (``benchmarks/bench_scale.py``; Shenzhen, mpc, against the unsharded run of the
same sessions): 100,000 vehicles in 4 blocks of 25,000, round 0 alone: owners' cost
+0.24%, peak -0.36%. 2,000 vehicles in 4 blocks of 500: round 0 alone, cost -0.41% and
peak -0.50%; one Jacobi round, cost -0.26% and peak +8.1%; two, cost +1.8% and peak +5.4%.
The proportional split is already at the symmetric fixed point (each shard assumes the
others move as it does, which blocks drawn from the same distributions do), and Jacobi
rounds only move away from it: the default is round 0 alone (``JACOBI_ROUNDS = 0``);
the rounds stay available (``Twin(jacobi_rounds=...)``) for shards that differ.

The last round's plans are the ones simulated and reported; a city with one shard runs
round 0 only (``c = b``: exactly the unsharded run).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

JACOBI_ROUNDS = 0
"""Damped Jacobi rounds after the proportional round 0: none by default, measured worse
(see the module docstring)."""

DAMPING = 0.5
"""``theta`` of equation (3): the share of a shard's newest load in what the others see."""


def rounds_for(*, n_shards: int, prices_peak: bool, jacobi_rounds: int = JACOBI_ROUNDS) -> int:
    """How many rounds a city's run takes: one without coupling, else 1 + ``jacobi_rounds``."""
    return 1 + jacobi_rounds if prices_peak and n_shards > 1 else 1


def proportional_context(
    base_kw: FloatArray, *, shard_sessions: int, city_sessions: int
) -> FloatArray:
    """Equation (2): the shard's share of the city's base load."""
    if city_sessions <= 0:
        return base_kw.copy()
    if shard_sessions == city_sessions:
        return base_kw.copy()
    return np.asarray(base_kw * (shard_sessions / city_sessions), dtype=np.float64)


def damped_loads(
    previous: Sequence[FloatArray] | None, newest: Sequence[FloatArray], *, damping: float = DAMPING
) -> list[FloatArray]:
    """Equation (3): ``y^r`` from ``y^(r-1)`` (``None`` in round 0) and the loads ``x^r``."""
    if not 0 < damping <= 1:
        raise ValueError(f"damping must lie in (0, 1], got {damping}")
    if previous is None:
        return [np.asarray(x, dtype=np.float64).copy() for x in newest]
    return [damping * x + (1 - damping) * y for x, y in zip(newest, previous, strict=True)]


def jacobi_contexts(base_kw: FloatArray, damped: Sequence[FloatArray]) -> list[FloatArray]:
    """Equation (4): each shard's base load plus the others' damped loads."""
    total = np.sum(damped, axis=0) if damped else np.zeros_like(base_kw)
    return [np.asarray(base_kw + (total - own), dtype=np.float64) for own in damped]
