"""AC power flow of a distribution feeder for every step of a day at once.

pandapower builds the feeder's bus admittance matrix once (:func:`feeder_model` runs its
Newton-Raphson power flow on the base case and keeps the internal ``Ybus``, ``Yf``,
``Yt`` and the bus and branch lookups); the day is then solved in one batch by the Z-bus
fixed point, whose iteration is one product of ``Y_LL``'s inverse with every step at once. With
``L`` the buses other than the slack ``s`` and ``S_L`` their complex power injections
(per unit, loads negative) at one step::

    V_L <- Y_LL^-1 ( conj(S_L / V_L) - Y_Ls V_s )

from the flat start ``V_L = V_s``, until no voltage moves by more than
:data:`TOLERANCE_PU`. ``Y_LL`` is inverted (or factorised) once for every step and every
iteration. The fixed point is the same power flow as pandapower's Newton-Raphson with
constant-power loads: it converges on radial distribution feeders within their normal
operating range (a feeder loaded far beyond its ratings, towards voltage collapse, is
reported as not converged, never as a number).

Branch results follow pandapower's definitions: a line's current is the larger of its two
ends', ``I_kA = |I_pu| S_base / (sqrt(3) V_base,kV)``, its loading that current over
``max_i_ka * df * parallel``; a transformer's loading (``trafo_loading="current"``) is the
larger of its sides' currents over their rated ``sn_mva / (sqrt(3) vn_kv) * parallel``.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from threadpoolctl import ThreadpoolController

from v2ghub.errors import InputError
from v2ghub.network.pandapower_import import pandapower

FloatArray = npt.NDArray[np.float64]
ComplexArray = npt.NDArray[np.complex128]
IntArray = npt.NDArray[np.int64]

TOLERANCE_PU = 1e-10
"""Largest change of any bus voltage (per unit) between two iterations at convergence."""
MAX_ITERATIONS = 100
DENSE_BUSES = 2_000
"""Networks up to this many buses keep ``Y_LL``'s inverse dense (64 MB at the most)."""
SQRT3 = math.sqrt(3.0)
# pandapower's internal bus table: column of the bus type (4 = isolated) and base kV.
_BUS_TYPE, _BASE_KV, _ISOLATED = 1, 9, 4


@dataclass(frozen=True)
class FeederModel:
    """A feeder as the batched power flow solves it (from :func:`feeder_model`).

    Indices ``bus`` are pandapower's internal (merged) buses; ``load_bus`` gives each of the
    network's loads (its ``load`` table's rows, in order) its bus, and ``bus_of`` maps
    pandapower's bus index to the internal one.
    """

    name: str
    base_mva: float
    ybus: sp.csc_matrix
    yf: sp.csr_matrix
    yt: sp.csr_matrix
    slack: int
    v_slack: complex
    solved: IntArray
    """The buses whose voltage is solved (all but the slack and isolated ones)."""
    bus_of: dict[int, int]
    bus_base_kv: FloatArray
    load_bus: IntArray
    load_mw: FloatArray
    """Each load's nominal active power (the network's ``p_mw``)."""
    load_mvar: FloatArray
    branch_from: IntArray
    branch_to: IntArray
    lines: slice
    """The rows of ``yf``/``yt`` that are the network's lines (in its ``line`` table's order)."""
    line_rating_ka: FloatArray
    trafos: slice
    trafo_rating_hv_ka: FloatArray
    trafo_rating_lv_ka: FloatArray
    line_names: tuple[str, ...]
    trafo_names: tuple[str, ...]
    solve: Callable[[ComplexArray], ComplexArray]
    """``x -> Y_LL^-1 x`` for a block of steps (:func:`_solver`), made once per feeder."""
    constant: ComplexArray
    """``-Y_Ls V_s``: what the slack's voltage drives into the solved buses."""

    @property
    def n_buses(self) -> int:
        return int(self.bus_base_kv.size)


@dataclass(frozen=True)
class FlowResult:
    """A day's power flow: per element and step (columns are steps)."""

    vm_pu: FloatArray
    """Voltage magnitude per internal bus (NaN for an isolated bus)."""
    line_loading: FloatArray
    """Per line, its current over its rating (1.0 = fully loaded)."""
    trafo_loading: FloatArray
    """Per transformer, its current over its rating."""
    converged: npt.NDArray[np.bool_]
    """Per step: whether the fixed point converged (where not, the values are NaN)."""
    iterations: int


def feeder_model(net: Any, *, name: str = "feeder") -> FeederModel:
    """The batched model of a pandapower network (its base case solved once by pandapower).

    Raises :class:`InputError` for a network pandapower cannot solve, or with other than one
    external grid, or with generators (the model has loads only)."""
    pp = pandapower()
    grids = int(net.ext_grid.in_service.sum())
    generators = int(net.gen.in_service.sum()) + int(net.sgen.in_service.sum())
    if grids != 1 or generators:
        raise InputError(
            f"feeder {name}: one external grid and no generators are supported (found "
            f"{grids} external grids and {generators} generators in service)"
        )
    try:
        # numba=False: pandapower would compile its Newton-Raphson (seconds) for one run.
        pp.runpp(
            net,
            calculate_voltage_angles=True,
            trafo_model="t",
            trafo_loading="current",
            numba=False,
        )
    except Exception as error:  # pandapower raises its own and numpy's errors
        raise InputError(f"feeder {name}: pandapower's power flow failed: {error}") from None
    ppc = net._ppc
    internal = ppc["internal"]
    ref = np.asarray(internal.get("ref", ()), dtype=np.int64)
    voltage_controlled = len(internal.get("pv", ()))
    if ref.size != 1 or voltage_controlled:
        raise InputError(
            f"feeder {name}: one external grid and no generator buses are supported "
            f"(found {ref.size} slack and {voltage_controlled} voltage-controlled buses)"
        )
    bus_table = np.asarray(internal["bus"])
    slack = int(ref[0])
    isolated = bus_table[:, _BUS_TYPE] == _ISOLATED
    solved = np.flatnonzero(~isolated & (np.arange(bus_table.shape[0]) != slack))
    lookup = np.asarray(net._pd2ppc_lookups["bus"], dtype=np.int64)
    bus_of = {int(b): int(lookup[b]) for b in net.bus.index}
    loads = net.load[net.load.in_service]
    if len(loads) != len(net.load):
        raise InputError(f"feeder {name}: loads out of service are not supported")
    branch = np.asarray(internal["branch"])
    ranges = net._pd2ppc_lookups["branch"]
    line_start, line_stop = ranges.get("line", (0, 0))
    trafo_start, trafo_stop = ranges.get("trafo", (line_stop, line_stop))
    line = net.line
    trafo = net.trafo
    ext_grid = net.ext_grid.iloc[0]
    v_slack = complex(
        ext_grid.vm_pu * np.exp(1j * np.deg2rad(ext_grid.get("va_degree", 0.0) or 0.0))
    )
    ybus = sp.csc_matrix(internal["Ybus"])
    y_rows = ybus[solved]
    y_ls = y_rows[:, [slack]].toarray()[:, 0]
    return FeederModel(
        name=name,
        base_mva=float(ppc["baseMVA"]),
        ybus=ybus,
        yf=sp.csr_matrix(internal["Yf"]),
        yt=sp.csr_matrix(internal["Yt"]),
        slack=slack,
        v_slack=v_slack,
        solved=solved.astype(np.int64),
        bus_of=bus_of,
        bus_base_kv=bus_table[:, _BASE_KV].astype(np.float64),
        load_bus=lookup[loads.bus.to_numpy(dtype=np.int64)],
        load_mw=(loads.p_mw * loads.scaling).to_numpy(dtype=np.float64),
        load_mvar=(loads.q_mvar * loads.scaling).to_numpy(dtype=np.float64),
        branch_from=branch[:, 0].real.astype(np.int64),
        branch_to=branch[:, 1].real.astype(np.int64),
        lines=slice(line_start, line_stop),
        line_rating_ka=(line.max_i_ka * line.df * line.parallel).to_numpy(dtype=np.float64),
        trafos=slice(trafo_start, trafo_stop),
        trafo_rating_hv_ka=(trafo.sn_mva / (SQRT3 * trafo.vn_hv_kv) * trafo.parallel).to_numpy(
            dtype=np.float64
        ),
        trafo_rating_lv_ka=(trafo.sn_mva / (SQRT3 * trafo.vn_lv_kv) * trafo.parallel).to_numpy(
            dtype=np.float64
        ),
        line_names=tuple(str(n) for n in line.name.fillna("").astype(str)),
        trafo_names=tuple(str(n) for n in trafo.name.fillna("").astype(str)),
        solve=_solver(y_rows[:, solved].tocsc()),
        constant=-y_ls * v_slack,
    )


def solve_day(model: FeederModel, bus_mw: FloatArray, bus_mvar: FloatArray) -> FlowResult:
    """The power flow at every step: ``bus_mw``/``bus_mvar`` are each internal bus's
    consumption per step (buses x steps, MW and Mvar, + consumed), loads and charging
    together."""
    n_bus = model.n_buses
    if bus_mw.shape[0] != n_bus or bus_mvar.shape != bus_mw.shape:
        raise ValueError(f"bus powers must have {n_bus} rows, got {bus_mw.shape}, {bus_mvar.shape}")
    steps = bus_mw.shape[1]
    solved = model.solved
    injection = np.asarray(
        -(bus_mw[solved] + 1j * bus_mvar[solved]) / model.base_mva, dtype=np.complex128
    )
    v = np.full((solved.size, steps), model.v_slack, dtype=np.complex128)
    converged = np.zeros(steps, dtype=bool)
    with _one_blas_thread():
        iterations = _iterate(
            model.solve, injection, model.constant, v, converged, np.arange(steps)
        )
    voltages = np.full((n_bus, steps), np.nan + 0j, dtype=np.complex128)
    voltages[model.slack] = model.v_slack
    voltages[solved] = v
    voltages[:, ~converged] = np.nan
    return FlowResult(
        vm_pu=np.abs(voltages),
        line_loading=_line_loading(model, voltages),
        trafo_loading=_trafo_loading(model, voltages),
        converged=converged,
        iterations=iterations,
    )


@functools.cache
def _blas() -> ThreadpoolController:
    return ThreadpoolController()


def _one_blas_thread() -> contextlib.AbstractContextManager[object]:
    """A feeder's matrices are small: BLAS threads would only wait for each other (a
    115-bus inverse took 43 ms threaded on a busy machine, against 1 ms on one thread)."""
    limit: contextlib.AbstractContextManager[object] = _blas().limit(limits=1, user_api="blas")
    return limit


def _iterate(  # noqa: PLR0917 - one private loop's state
    solve: Callable[[ComplexArray], ComplexArray],
    injection: ComplexArray,
    constant: ComplexArray,
    v: ComplexArray,
    converged: npt.NDArray[np.bool_],
    active: IntArray,
) -> int:
    """The fixed point on the steps ``active`` (``v`` and ``converged`` updated in place);
    the iterations it took. A step leaves the batch once converged, or once it diverges
    (a voltage above twice nominal or not finite: a load beyond what the feeder can carry)."""
    iterations = 0
    while active.size and iterations < MAX_ITERATIONS:
        iterations += 1
        current = v[:, active]
        rhs = np.conj(injection[:, active] / current) + constant[:, None]
        updated = solve(rhs)
        change = np.max(np.abs(updated - current), axis=0) if v.shape[0] else np.zeros(0)
        v[:, active] = updated
        done = change <= TOLERANCE_PU
        bad = ~np.isfinite(change) | (np.max(np.abs(updated), axis=0, initial=0.0) > 2.0)
        converged[active[done]] = True
        active = active[~done & ~bad]
    return iterations


def _solver(y_ll: sp.csc_matrix) -> Callable[[ComplexArray], ComplexArray]:
    """``x -> Y_LL^-1 x`` for a block of steps: a feeder's buses are few, so the inverse
    is kept dense and each iteration is one matrix product (a sparse LU solves each
    step's column apart, tens of times slower); a large network is factorised."""
    if y_ll.shape[0] <= DENSE_BUSES:
        with _one_blas_thread():
            z_ll = np.linalg.inv(y_ll.toarray())
        return lambda rhs: z_ll @ rhs
    lu = spla.splu(y_ll)
    return lambda rhs: np.asarray(lu.solve(rhs), dtype=np.complex128)


def _branch_currents_ka(
    model: FeederModel, voltages: ComplexArray, rows: slice
) -> tuple[FloatArray, FloatArray]:
    """Currents at the from and to ends of branches ``rows``, kA."""
    v = np.nan_to_num(voltages)
    i_from = np.abs(model.yf[rows] @ v) * model.base_mva
    i_to = np.abs(model.yt[rows] @ v) * model.base_mva
    from_kv = model.bus_base_kv[model.branch_from[rows]][:, None]
    to_kv = model.bus_base_kv[model.branch_to[rows]][:, None]
    bad = np.isnan(voltages[0])
    i_from[:, bad] = np.nan
    i_to[:, bad] = np.nan
    return i_from / (SQRT3 * from_kv), i_to / (SQRT3 * to_kv)


def _line_loading(model: FeederModel, voltages: ComplexArray) -> FloatArray:
    i_from, i_to = _branch_currents_ka(model, voltages, model.lines)
    return np.maximum(i_from, i_to) / model.line_rating_ka[:, None]


def _trafo_loading(model: FeederModel, voltages: ComplexArray) -> FloatArray:
    i_hv, i_lv = _branch_currents_ka(model, voltages, model.trafos)
    return np.maximum(
        i_hv / model.trafo_rating_hv_ka[:, None], i_lv / model.trafo_rating_lv_ka[:, None]
    )


def bus_powers(
    model: FeederModel, load_scale: FloatArray, extra_mw: FloatArray | None = None
) -> tuple[FloatArray, FloatArray]:
    """Each internal bus's consumption per step: the network's loads times ``load_scale``
    (one factor per step, the base load's shape) plus ``extra_mw`` (buses x steps, e.g.
    charging, at unity power factor)."""
    steps = load_scale.size
    bus_mw = np.zeros((model.n_buses, steps))
    bus_mvar = np.zeros((model.n_buses, steps))
    np.add.at(bus_mw, model.load_bus, model.load_mw[:, None] * load_scale[None, :])
    np.add.at(bus_mvar, model.load_bus, model.load_mvar[:, None] * load_scale[None, :])
    if extra_mw is not None:
        bus_mw += extra_mw
    return bus_mw, bus_mvar
