"""Compiled kernels of the fast planner (numba): one exact battery DP per vehicle, by site.

Everything here works in *stored* energy (kWh in the battery). A step's change
``x = e[t+1] - e[t]`` costs ``f_t(x) = buy[t] * x`` when charging (``x > 0``) and
``sell[t] * x`` when discharging (``x < 0``), with

    buy[t]  = import_price[t] / charge_efficiency                      (CNY per kWh stored)
    sell[t] = min((export_price[t] - degradation) * discharge_efficiency, buy[t])

so ``f_t`` is convex. The cost-to-go ``V_t(e)`` (the least cost from step ``t`` on with
``e`` stored, plus ``M`` per kWh short of the target at departure, ``M`` above every price)
is convex and piecewise linear, and ``V_t = (V_{t+1} infimal-convolved with f_t reflected)``
restricted to the energy window. It is kept as a list of slopes (sorted, ascending) with
the energy length each slope spans, so one step of the backward recursion inserts two
segments (slope ``-buy[t]`` of length ``C_t``, slope ``-sell[t]`` of length ``D_t``) and cuts
the ends that leave ``[energy_min, energy_max]``. The vehicles of a price class share the
step prices, so a vehicle has at most ``2 L + 2`` distinct slopes for ``L`` distinct
(import, export) price levels: a step costs O(L), a vehicle O(H L).

The forward pass needs, per step, only where the slope of ``V_{t+1}`` crosses ``-buy[t]``
and ``-sell[t]``: charge up to the first, discharge down to the second (the threshold
structure of the optimum), within the step's power bounds. Energy at exactly the
crossing price (a tie: equally cheap later steps) is spread evenly over the tied steps,
which leaves room at shared sites without changing the cost.

Numba kernels carry no type information for mypy; the typed wrapper is
:func:`plan_by_site`.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from numba import njit, prange

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


@njit(cache=True)
def _stored_change(power_kw: float, eta_c: float, eta_d: float, dt_h: float) -> float:
    """Stored-energy change (kWh) of one step at ``power_kw``: ``g(p) dt_h``, the scalar
    form of :func:`v2ghub.model.headroom.stored_rate_kwh_per_h`."""
    if power_kw >= 0.0:
        return power_kw * eta_c * dt_h
    return power_kw * dt_h / eta_d


@njit(cache=True)
def _power_for_change(change_kwh: float, eta_c: float, eta_d: float, dt_h: float) -> float:
    """Charger power (kW) that changes stored energy by ``change_kwh`` in one step: the
    inverse of :func:`_stored_change` (:func:`v2ghub.model.headroom.power_for_stored_rate`)."""
    if change_kwh >= 0.0:
        return change_kwh / (eta_c * dt_h)
    return change_kwh * eta_d / dt_h


@njit(cache=True)
def _slope_ranks(  # noqa: PLR0917 - numba kernels take no keyword-only arguments
    buy_level: FloatArray,
    sell_level: FloatArray,
    buy_rank: IntArray,
    sell_rank: IntArray,
    values: FloatArray,
    order: IntArray,
) -> int:
    """Rank the vehicle's distinct slopes; rank 0 is the shortfall slope ``-M``.

    Fills ``buy_rank``/``sell_rank`` (per price level) and returns the number of ranks;
    the slope 0 (energy above the target) gets a rank of its own unless a price equals it.
    """
    n_levels = buy_level.shape[0]
    n_values = 2 * n_levels + 1
    for level in range(n_levels):
        values[level] = -buy_level[level]
        values[n_levels + level] = -sell_level[level]
    values[2 * n_levels] = 0.0
    # Insertion sort: a handful of TOU levels; many levels fall back to argsort.
    if n_values <= 24:
        for j in range(n_values):
            order[j] = j
        for j in range(1, n_values):
            key = order[j]
            k = j - 1
            while k >= 0 and values[order[k]] > values[key]:
                order[k + 1] = order[k]
                k -= 1
            order[k + 1] = key
    else:
        sorted_index = np.argsort(values[:n_values])
        for j in range(n_values):
            order[j] = sorted_index[j]
    rank = 0
    zero_rank = 0
    for j in range(n_values):
        if j > 0 and values[order[j]] != values[order[j - 1]]:
            rank += 1
        index = order[j]
        if index < n_levels:
            buy_rank[index] = rank + 1
        elif index < 2 * n_levels:
            sell_rank[index - n_levels] = rank + 1
        else:
            zero_rank = rank + 1
    values[0] = zero_rank  # returned through the scratch: the rank of slope 0
    return rank + 2


@njit(cache=True)
def _solve_vehicle(  # noqa: PLR0917 - numba kernels take no keyword-only arguments
    first: int,
    end: int,
    energy_kwh: float,
    energy_min_kwh: float,
    energy_max_kwh: float,
    target_kwh: float,
    eta_c: float,
    eta_d: float,
    dt_h: float,
    step_level: IntArray,
    buy_rank: IntArray,
    sell_rank: IntArray,
    n_ranks: int,
    zero_rank: int,
    low_kw: FloatArray,
    high_kw: FloatArray,
    lengths: FloatArray,
    thresholds: FloatArray,
    power_out: FloatArray,
) -> None:
    """Exact cost-optimal powers of one vehicle for steps ``first .. end-1``.

    ``low_kw[t] <= p[t] <= high_kw[t]`` bound the power (charger and, at a shared site, the
    room the other vehicles leave). ``thresholds`` is scratch of shape (horizon, 8).
    """
    for r in range(n_ranks):
        lengths[r] = 0.0
    low_e = energy_min_kwh
    high_e = energy_max_kwh
    reachable_target = min(max(target_kwh, energy_min_kwh), energy_max_kwh)
    lengths[0] = reachable_target - energy_min_kwh
    lengths[zero_rank] += energy_max_kwh - reachable_target
    for t in range(end - 1, first - 1, -1):
        rb = buy_rank[step_level[t]]
        rs = sell_rank[step_level[t]]
        top = max(rb, rs)
        position = low_e
        a_strict = a_tied = b_loose = b_strict = low_e
        for r in range(top + 1):
            if r == rb:
                a_strict = position
                a_tied = position + lengths[r]
            if r == rs:
                b_loose = position
                b_strict = position + lengths[r]
            position += lengths[r]
        low_x = _stored_change(low_kw[t], eta_c, eta_d, dt_h)
        high_x = _stored_change(high_kw[t], eta_c, eta_d, dt_h)
        thresholds[t, 0] = a_strict
        thresholds[t, 1] = a_tied
        thresholds[t, 2] = b_loose
        thresholds[t, 3] = b_strict
        thresholds[t, 4] = low_e
        thresholds[t, 5] = high_e
        thresholds[t, 6] = low_x
        thresholds[t, 7] = high_x
        # Infimal convolution with this step's cost, then the energy window.
        lengths[rb] += max(high_x, 0.0) - max(low_x, 0.0)
        lengths[rs] += min(high_x, 0.0) - min(low_x, 0.0)
        low_e -= high_x
        high_e -= low_x
        if low_e < energy_min_kwh:
            cut = energy_min_kwh - low_e
            r = 0
            while cut > 0.0 and r < n_ranks:
                take = min(lengths[r], cut)
                lengths[r] -= take
                cut -= take
                r += 1
            low_e = energy_min_kwh
        if high_e > energy_max_kwh:
            cut = high_e - energy_max_kwh
            r = n_ranks - 1
            while cut > 0.0 and r >= 0:
                take = min(lengths[r], cut)
                lengths[r] -= take
                cut -= take
                r -= 1
            high_e = energy_max_kwh
        # No feasible energy left happens only with bounds that force a limit: keep a point.
        high_e = max(high_e, low_e)
    energy = energy_kwh
    for t in range(first, end):
        a_strict = thresholds[t, 0]
        a_tied = thresholds[t, 1]
        b_loose = thresholds[t, 2]
        b_strict = thresholds[t, 3]
        low_x = thresholds[t, 6]
        high_x = thresholds[t, 7]
        lowest = max(energy + low_x, thresholds[t, 4])
        highest = min(energy + high_x, thresholds[t, 5])
        if lowest > highest:  # infeasible start: stay as close to the window as the bounds allow
            lowest = highest = min(max(energy, energy + low_x), energy + high_x)
        if energy < a_strict:
            wanted = a_strict
        elif energy > b_strict:
            wanted = b_strict
        else:
            wanted = energy
        after = min(max(wanted, lowest), highest)
        if after >= energy and after < a_tied and highest > after:
            # A tie with later equally cheap steps: take this step's even share.
            room = highest - after
            after += room * (a_tied - after) / (room + (a_tied - a_strict))
        elif after <= energy and after > b_loose and lowest < after:
            room = after - lowest
            after -= room * (after - b_loose) / (room + (b_strict - b_loose))
        power_out[t] = _power_for_change(after - energy, eta_c, eta_d, dt_h)
        energy = after


@njit(cache=True)
def _site_shortfall_kwh(  # noqa: PLR0917 - numba kernels take no keyword-only arguments
    vehicles: IntArray,
    arrival_step: IntArray,
    departure_step: IntArray,
    energy_kwh: FloatArray,
    target_energy_kwh: FloatArray,
    charge_efficiency: FloatArray,
    discharge_efficiency: FloatArray,
    dt_h: float,
    power_kw: FloatArray,
) -> float:
    """Energy the site's vehicles would leave short of their targets under ``power_kw``."""
    total = 0.0
    for i in vehicles:
        energy = energy_kwh[i]
        for t in range(arrival_step[i], departure_step[i]):
            energy += _stored_change(
                power_kw[i, t], charge_efficiency[i], discharge_efficiency[i], dt_h
            )
        total += max(target_energy_kwh[i] - energy, 0.0)
    return total


@njit(cache=True)
def _deadline_first_fill(  # noqa: PLR0917 - numba kernels take no keyword-only arguments
    vehicles: IntArray,
    import_limit_kw: float,
    arrival_step: IntArray,
    departure_step: IntArray,
    energy_kwh: FloatArray,
    energy_max_kwh: FloatArray,
    target_energy_kwh: FloatArray,
    max_charge_kw: FloatArray,
    charge_efficiency: FloatArray,
    dt_h: float,
    net_kw: FloatArray,
    power_kw: FloatArray,
) -> None:
    """Charge-only, earliest departure first, each as late as its stay and the site allow.

    A vehicle that leaves early gets the steps it needs before the others fill them; one
    that stays long charges after the early leavers have gone. This delivers every target
    a shared site can deliver in the common case where the vehicles are plugged in now;
    it ignores prices (the passes after it restore them).
    """
    for i in vehicles[np.argsort(departure_step[vehicles], kind="mergesort")]:
        eta_c = charge_efficiency[i]
        need = max(min(target_energy_kwh[i], energy_max_kwh[i]) - energy_kwh[i], 0.0)
        for t in range(departure_step[i] - 1, arrival_step[i] - 1, -1):
            if need <= 0.0:
                break
            room = min(max_charge_kw[i], import_limit_kw - net_kw[t])
            if room <= 0.0:
                continue
            stored = min(need, room * eta_c * dt_h)
            power_kw[i, t] = stored / (eta_c * dt_h)
            net_kw[t] += power_kw[i, t]
            need -= stored


@njit(cache=True)
def _least_laxity_fill(  # noqa: PLR0917 - numba kernels take no keyword-only arguments
    vehicles: IntArray,
    import_limit_kw: float,
    arrival_step: IntArray,
    departure_step: IntArray,
    energy_kwh: FloatArray,
    energy_max_kwh: FloatArray,
    target_energy_kwh: FloatArray,
    max_charge_kw: FloatArray,
    charge_efficiency: FloatArray,
    dt_h: float,
    net_kw: FloatArray,
    power_kw: FloatArray,
) -> None:
    """Charge-only, step by step: the plugged vehicles with the least slack charge first.

    A vehicle's slack (laxity) is the number of steps it could still spare: the steps left
    of its stay less those its remaining need takes at full power. Serving the least slack
    first keeps a vehicle that must charge every step of its stay from being crowded out
    by others that merely leave sooner. It ignores prices (the passes after it restore them).
    """
    n = vehicles.shape[0]
    need = np.empty(n)
    for k in range(n):
        i = vehicles[k]
        need[k] = max(min(target_energy_kwh[i], energy_max_kwh[i]) - energy_kwh[i], 0.0)
    slack = np.empty(n)
    horizon = power_kw.shape[1]
    for t in range(horizon):
        for k in range(n):
            i = vehicles[k]
            full = max_charge_kw[i] * charge_efficiency[i] * dt_h
            if arrival_step[i] <= t < departure_step[i] and need[k] > 0.0 and full > 0.0:
                slack[k] = (departure_step[i] - t) - need[k] / full
            else:
                slack[k] = np.inf
        for k in np.argsort(slack, kind="mergesort"):
            if slack[k] == np.inf:
                break
            i = vehicles[k]
            room = min(max_charge_kw[i], import_limit_kw - net_kw[t])
            if room <= 0.0:
                break
            eta_c = charge_efficiency[i]
            stored = min(need[k], room * eta_c * dt_h)
            power_kw[i, t] = stored / (eta_c * dt_h)
            net_kw[t] += power_kw[i, t]
            need[k] -= stored


@njit(cache=True)
def _copy_rows(  # noqa: PLR0917 - numba kernels take no keyword-only arguments
    vehicles: IntArray,
    arrival_step: IntArray,
    departure_step: IntArray,
    power_kw: FloatArray,
    rows: FloatArray,
    to_rows: bool,
) -> None:
    """Copy the vehicles' stays from ``power_kw`` into ``rows`` (or back)."""
    for k in range(vehicles.shape[0]):
        i = vehicles[k]
        for t in range(arrival_step[i], departure_step[i]):
            if to_rows:
                rows[k, t] = power_kw[i, t]
            else:
                power_kw[i, t] = rows[k, t]


@njit(cache=True)
def _deliver_first_if_better(  # noqa: PLR0917 - numba kernels take no keyword-only arguments
    vehicles: IntArray,
    import_limit_kw: float,
    arrival_step: IntArray,
    departure_step: IntArray,
    energy_kwh: FloatArray,
    energy_max_kwh: FloatArray,
    target_energy_kwh: FloatArray,
    max_charge_kw: FloatArray,
    charge_efficiency: FloatArray,
    discharge_efficiency: FloatArray,
    dt_h: float,
    net_kw: FloatArray,
    power_kw: FloatArray,
) -> None:
    """After the first pass at a limited site: if a vehicle is left short, try
    :func:`_deadline_first_fill` and :func:`_least_laxity_fill` instead and keep whichever
    of the three leaves least short.

    Planning one vehicle after another can give the steps a later vehicle cannot do
    without to an earlier one. The passes that follow re-plan each vehicle exactly within
    the room the others leave, which never makes it shorter: the delivery chosen here is
    kept, and the cost is brought back down.
    """
    short = _site_shortfall_kwh(
        vehicles,
        arrival_step,
        departure_step,
        energy_kwh,
        target_energy_kwh,
        charge_efficiency,
        discharge_efficiency,
        dt_h,
        power_kw,
    )
    if short <= 1e-9:
        return
    best = np.empty((vehicles.shape[0], power_kw.shape[1]))
    best_net = net_kw.copy()
    _copy_rows(vehicles, arrival_step, departure_step, power_kw, best, to_rows=True)
    for fill in range(2):
        for k in range(vehicles.shape[0]):
            i = vehicles[k]
            for t in range(arrival_step[i], departure_step[i]):
                net_kw[t] -= power_kw[i, t]
                power_kw[i, t] = 0.0
        fill_args = (
            vehicles,
            import_limit_kw,
            arrival_step,
            departure_step,
            energy_kwh,
            energy_max_kwh,
            target_energy_kwh,
            max_charge_kw,
            charge_efficiency,
            dt_h,
            net_kw,
            power_kw,
        )
        if fill == 0:
            _deadline_first_fill(*fill_args)
        else:
            _least_laxity_fill(*fill_args)
        filled = _site_shortfall_kwh(
            vehicles,
            arrival_step,
            departure_step,
            energy_kwh,
            target_energy_kwh,
            charge_efficiency,
            discharge_efficiency,
            dt_h,
            power_kw,
        )
        if filled < short - 1e-9:
            short = filled
            _copy_rows(vehicles, arrival_step, departure_step, power_kw, best, to_rows=True)
            best_net[:] = net_kw
    _copy_rows(vehicles, arrival_step, departure_step, power_kw, best, to_rows=False)
    net_kw[:] = best_net


@njit(cache=True, parallel=True)
def _plan_sites(  # noqa: PLR0917 - numba kernels take no keyword-only arguments
    vehicle_order: IntArray,
    site_start: IntArray,
    site_limited: BoolArray,
    import_limit_kw: FloatArray,
    export_limit_kw: FloatArray,
    arrival_step: IntArray,
    departure_step: IntArray,
    energy_kwh: FloatArray,
    energy_min_kwh: FloatArray,
    energy_max_kwh: FloatArray,
    target_energy_kwh: FloatArray,
    max_charge_kw: FloatArray,
    max_discharge_kw: FloatArray,
    charge_efficiency: FloatArray,
    discharge_efficiency: FloatArray,
    step_level: IntArray,
    price_class: IntArray,
    import_level: FloatArray,
    export_level: FloatArray,
    degradation_cny_per_kwh: FloatArray,
    site_load_kw: FloatArray,
    dt_h: float,
    passes: int,
    power_kw: FloatArray,
) -> None:
    n_sites = site_start.shape[0] - 1
    horizon = step_level.shape[0]
    n_levels = import_level.shape[1]
    n_values = 2 * n_levels + 1
    for site in prange(n_sites):
        buy_level = np.empty(n_levels)
        sell_level = np.empty(n_levels)
        buy_rank = np.empty(n_levels, dtype=np.int64)
        sell_rank = np.empty(n_levels, dtype=np.int64)
        values = np.empty(n_values)
        order = np.empty(n_values, dtype=np.int64)
        lengths = np.empty(n_values + 1)
        thresholds = np.empty((horizon, 8))
        low_kw = np.empty(horizon)
        high_kw = np.empty(horizon)
        row = np.empty(horizon)
        limited = site_limited[site]
        # The site's load so far: what is not ours to plan, then each vehicle planned.
        net_kw = site_load_kw[site].copy() if limited else np.zeros(horizon)
        rounds = passes if limited else 1
        for round_number in range(rounds):
            for k in range(site_start[site], site_start[site + 1]):
                i = vehicle_order[k]
                first = arrival_step[i]
                end = departure_step[i]
                if round_number > 0:
                    for t in range(first, end):
                        net_kw[t] -= power_kw[i, t]
                for t in range(first, end):
                    high = max_charge_kw[i]
                    # The first pass secures every target: no discharge, so no vehicle's
                    # arbitrage takes the room another needs to reach its target.
                    low = -max_discharge_kw[i] if round_number > 0 or not limited else 0.0
                    if limited:
                        high = min(high, import_limit_kw[site] - net_kw[t])
                        low = max(low, -export_limit_kw[site] - net_kw[t])
                        if low > high:
                            low = high = power_kw[i, t] if round_number > 0 else 0.0
                    low_kw[t] = low
                    high_kw[t] = high
                eta_c = charge_efficiency[i]
                eta_d = discharge_efficiency[i]
                prices = price_class[i]
                for level in range(n_levels):
                    buy = import_level[prices, level] / eta_c
                    buy_level[level] = buy
                    sell_level[level] = min(
                        (export_level[prices, level] - degradation_cny_per_kwh[i]) * eta_d, buy
                    )
                n_ranks = _slope_ranks(buy_level, sell_level, buy_rank, sell_rank, values, order)
                zero_rank = int(values[0])
                _solve_vehicle(
                    first,
                    end,
                    energy_kwh[i],
                    energy_min_kwh[i],
                    energy_max_kwh[i],
                    target_energy_kwh[i],
                    eta_c,
                    eta_d,
                    dt_h,
                    step_level,
                    buy_rank,
                    sell_rank,
                    n_ranks,
                    zero_rank,
                    low_kw,
                    high_kw,
                    lengths,
                    thresholds,
                    row,
                )
                for t in range(first, end):
                    power_kw[i, t] = row[t]
                    net_kw[t] += row[t]
            if limited and round_number == 0:
                _deliver_first_if_better(
                    vehicle_order[site_start[site] : site_start[site + 1]],
                    import_limit_kw[site],
                    arrival_step,
                    departure_step,
                    energy_kwh,
                    energy_max_kwh,
                    target_energy_kwh,
                    max_charge_kw,
                    charge_efficiency,
                    discharge_efficiency,
                    dt_h,
                    net_kw,
                    power_kw,
                )


def plan_by_site(
    *,
    vehicle_order: IntArray,
    site_start: IntArray,
    site_limited: BoolArray,
    import_limit_kw: FloatArray,
    export_limit_kw: FloatArray,
    arrival_step: IntArray,
    departure_step: IntArray,
    energy_kwh: FloatArray,
    energy_min_kwh: FloatArray,
    energy_max_kwh: FloatArray,
    target_energy_kwh: FloatArray,
    max_charge_kw: FloatArray,
    max_discharge_kw: FloatArray,
    charge_efficiency: FloatArray,
    discharge_efficiency: FloatArray,
    step_level: IntArray,
    price_class: IntArray,
    import_level_cny_per_kwh: FloatArray,
    export_level_cny_per_kwh: FloatArray,
    degradation_cny_per_kwh: FloatArray,
    dt_h: float,
    passes: int,
    power_kw: FloatArray,
    site_load_kw: FloatArray | None = None,
) -> None:
    """Fill ``power_kw`` (vehicles x steps, zeros outside each stay) site by site.

    Vehicle ``i`` pays ``import_level_cny_per_kwh[price_class[i], step_level[t]]`` in step
    ``t`` (and is paid the export level alike), less ``degradation_cny_per_kwh[i]`` per kWh
    discharged: price classes (classes x levels) let groups of vehicles see different
    prices, e.g. the pilots' valley rule priced for private chargers only.

    Sites run in parallel. Within a limited site, vehicles are planned one after another
    in ``vehicle_order``, each exactly (see the module docstring) within the room the
    others leave: ``-export_limit_kw - others <= p[t] <= import_limit_kw - others``; each
    further pass re-plans every vehicle against the others' latest plans, which never
    raises the site's cost. Unlimited sites need one pass. ``site_load_kw`` (sites x
    steps, optional) is load at the sites that is not planned here: the limits bound it
    plus the vehicles' power.
    """
    if site_load_kw is None:
        site_load_kw = np.zeros((site_start.shape[0] - 1, step_level.shape[0]))
    _plan_sites(
        vehicle_order,
        site_start,
        site_limited,
        import_limit_kw,
        export_limit_kw,
        arrival_step,
        departure_step,
        energy_kwh,
        energy_min_kwh,
        energy_max_kwh,
        target_energy_kwh,
        max_charge_kw,
        max_discharge_kw,
        charge_efficiency,
        discharge_efficiency,
        step_level,
        price_class,
        import_level_cny_per_kwh,
        export_level_cny_per_kwh,
        degradation_cny_per_kwh,
        np.ascontiguousarray(site_load_kw, dtype=np.float64),
        dt_h,
        passes,
        power_kw,
    )
