"""Distribution feeders under a city's sites: which networks, which sites sit on which
buses, and each feeder's day of AC power flow under a planner's charging.

Networks are pandapower's standard low-voltage test feeders (:data:`FEEDER_KINDS`), or a
user's pandapower JSON file. Each is built once per city from a seed (the Kerber networks
draw some cable types at random), so a city's feeders are the same for every planner.

How sites sit on feeders (:func:`attach_sites`): a city's residential compounds (its
``home-transformer`` sites) are what LV feeders serve, so feeder ``k`` takes the city's
``k``-th compound: the compound's charging is shared among the feeder's residential loads
(its households) in proportion to their rated power, as its homes' chargers are. On a
feeder with businesses too (CIGRE's commercial and industrial subnetworks) they keep their
own loads only: a workplace's or a public station's charging hub (a megawatt of DC
chargers) has an MV connection of its own. The loads' own demand follows the city's
base-load shape and
peaks with the city's: at its peak hour the loads alone put the feeder's most loaded
transformer at :data:`BASE_PEAK_TRAFO_LOADING` of its rating (the test feeders' rated
loads are design values: the Kerber village's 6 kW a household alone fills 88% of its
transformer, the suburb's 2 kW 47%). Charging is at unity power factor.

Limits checked (:func:`feeder_day`): a transformer or line is overloaded above 100% of its
rating; a bus voltage must stay within :data:`VOLTAGE_BAND_PU`, the supply voltage
deviation GB/T 12325-2008 allows the households' 220 V single-phase supply (+7%, -10%).
"""

from __future__ import annotations

import copy
import functools
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from v2ghub import defaults
from v2ghub.errors import InputError
from v2ghub.model.sites import SiteLimits
from v2ghub.network.pandapower_import import pandapower
from v2ghub.network.power_flow import FeederModel, FlowResult, bus_powers, feeder_model, solve_day
from v2ghub.units import KW_PER_MW

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

VOLTAGE_BAND_PU = defaults.FEEDER_VOLTAGE_BAND_PU
"""GB/T 12325-2008, for the 220 V single-phase supply of the households on these feeders:
+7% and -10% of nominal."""
OVERLOAD = 1.0
"""A branch's current over its rating above which it is overloaded."""
BASE_PEAK_TRAFO_LOADING = defaults.FEEDER_BASE_PEAK_TRAFO_LOADING
"""The most loaded transformer's loading from the loads alone at the city's peak hour: a
distribution transformer is sized with room for growth (planned peak utilisation of
50-70% is usual practice)."""
TODAYS_CHARGING = frozenset({"uncontrolled", "tou", "v2g-rules"})
"""Planners that stand for today's chargers and rules: they never see the feeders (the
others plan within :mod:`v2ghub.network.feeder_limits`' caps)."""
HOME_SITE = "home-transformer"


@dataclass(frozen=True)
class FeederOptions:
    """Feeders asked of the twin: how many a city, from which seed, and a user's network
    (None: the standard feeders in turn)."""

    count: int
    seed: int = 0
    network_file: Path | None = None


@dataclass(frozen=True)
class FeederKind:
    """One of pandapower's standard feeders, and which of its loads are households."""

    make: Callable[[], Any]
    description: str
    residential: Callable[[str], bool]
    """Whether a load (by its name) is a household's; the others are businesses."""


def _pandapower_networks() -> Any:
    return pandapower().networks


def _kerber(name: str) -> Callable[[], Any]:
    def make() -> Any:
        return getattr(_pandapower_networks(), name)()

    return make


def _everyone(_: str) -> bool:
    return True


def _cigre_residential(load_name: str) -> bool:
    return load_name.startswith("Load R")


FEEDER_KINDS: dict[str, FeederKind] = {
    "kerber-vorstadt": FeederKind(
        _kerber("create_kerber_vorstadtnetz_kabel_1"),
        "suburban cable feeder, 146 households, 630 kVA 10/0.4 kV transformer "
        "(Kerber 2011, as pandapower builds it)",
        _everyone,
    ),
    "kerber-dorf": FeederKind(
        _kerber("create_kerber_dorfnetz"),
        "village feeder, 57 households, 400 kVA 10/0.4 kV transformer (Kerber 2011)",
        _everyone,
    ),
    "cigre-lv": FeederKind(
        lambda: _pandapower_networks().create_cigre_network_lv(),
        "CIGRE TF C6.04.02 European LV benchmark: residential, industrial and commercial "
        "subnetworks behind 500, 150 and 300 kVA 20/0.4 kV transformers",
        _cigre_residential,
    ),
}
"""The standard feeders, taken in this order, one after another, by a city's feeders."""


@dataclass(frozen=True)
class Feeder:
    """One feeder of a city: its network's model and the sites on its buses."""

    name: str
    kind: str
    model: FeederModel
    site_rows: IntArray
    """The case's sites on this feeder (rows of its :class:`SiteLimits`)."""
    site_to_bus_mw: sp.csr_matrix
    """Buses x ``site_rows``: MW at each bus per kW of each site's net power."""
    base_scale: float
    """The loads' demand at the city's peak hour, as a share of their rated power."""


@dataclass(frozen=True)
class FeederDay:
    """A feeder's day under one planner: per step, its worst values."""

    name: str
    kind: str
    max_trafo_loading: FloatArray
    max_line_loading: FloatArray
    min_vm_pu: FloatArray
    max_vm_pu: FloatArray
    converged: npt.NDArray[np.bool_]

    @property
    def overloaded(self) -> npt.NDArray[np.bool_]:
        """Steps with a transformer or line above its rating (or no solution)."""
        worst = np.fmax(self.max_trafo_loading, self.max_line_loading)
        return (worst > OVERLOAD) | ~self.converged

    @property
    def voltage_out(self) -> npt.NDArray[np.bool_]:
        """Steps with a bus voltage outside the band (or no solution)."""
        low, high = VOLTAGE_BAND_PU
        return (self.min_vm_pu < low) | (self.max_vm_pu > high) | ~self.converged


def sees_feeders(planner: str) -> bool:
    """Whether ``planner`` plans within the feeders' limits (every optimising planner,
    with or without the valley rule; not today's chargers and rules)."""
    return planner.removesuffix("+rules") not in TODAYS_CHARGING


def build_network(kind: str, *, seed: int, path: Path | None = None) -> Any:
    """A pandapower network: a standard ``kind`` built from ``seed``, or a user's JSON."""
    if path is not None:
        try:
            return pandapower().from_json(str(path))
        except Exception as error:  # pandapower's reader raises many kinds
            raise InputError(f"cannot read the pandapower network: {error}", file=path) from None
    try:
        feeder_kind = FEEDER_KINDS[kind]
    except KeyError:
        known = ", ".join(FEEDER_KINDS)
        raise InputError(f"unknown feeder kind {kind!r} (known: {known})") from None
    state = random.getstate()  # the Kerber builders draw cable types from `random`
    try:
        random.seed(seed)
        return feeder_kind.make()
    finally:
        random.setstate(state)


def check_network_file(path: Path) -> None:
    """Refuse a user's network the feeders cannot use, before anything is built from it
    (:class:`InputError` naming the file): one that does not read, that pandapower cannot
    solve, or that :func:`~v2ghub.network.power_flow.feeder_model` does not take. A file
    found good is not checked again until it changes."""
    try:
        modified_ns = path.stat().st_mtime_ns
    except OSError:
        modified_ns = -1  # the reader says what is wrong
    _check_network(path, modified_ns)


@functools.cache
def _check_network(path: Path, modified_ns: int) -> None:
    try:
        feeder_model(build_network("file", seed=0, path=path), name="network")
    except InputError as error:
        if error.file is not None:
            raise
        raise InputError(error.problem, file=path) from None


def attach_sites(
    sites: SiteLimits,
    n_feeders: int,
    *,
    seed: int,
    city: str = "",
    kinds: tuple[str, ...] = tuple(FEEDER_KINDS),
    network_file: Path | None = None,
) -> tuple[Feeder, ...]:
    """``n_feeders`` feeders under ``sites``' residential compounds, as the module says.
    Fewer when the city has fewer compounds."""
    if n_feeders < 0:
        raise InputError(f"the number of feeders must be at least 0, got {n_feeders}")
    homes = [k for k, s in enumerate(sites.site_ids) if HOME_SITE in s]
    if not homes:  # a user's sites: any site is a compound
        homes = list(range(sites.n_sites))
    feeders: list[Feeder] = []
    models: dict[str, tuple[FeederModel, Any]] = {}
    scales: dict[str, float] = {}
    for number in range(min(n_feeders, len(homes))):
        kind = "file" if network_file is not None else kinds[number % len(kinds)]
        if kind not in models:  # one build per kind and city: every feeder of a kind alike
            net = build_network(kind, seed=seed, path=network_file)
            models[kind] = (feeder_model(copy.deepcopy(net), name=kind), net)
        model, net = models[kind]
        if kind not in scales:
            scales[kind] = _base_scale(model)
        names = net.load.name.fillna("").astype(str).tolist()
        residential = FEEDER_KINDS[kind].residential if kind in FEEDER_KINDS else _everyone
        household = np.array([residential(n) for n in names], dtype=bool)
        feeders.append(
            Feeder(
                name=f"{city}-feeder-{number}" if city else f"feeder-{number}",
                kind=kind,
                model=model,
                site_rows=np.asarray([homes[number]], dtype=np.int64),
                site_to_bus_mw=_spread(model, [household]),
                base_scale=scales[kind],
            )
        )
    return tuple(feeders)


def _base_scale(model: FeederModel) -> float:
    """The share of the rated loads that puts the most loaded transformer at
    :data:`BASE_PEAK_TRAFO_LOADING` (current grows about in proportion to load: two
    corrections of the proportion make it exact to a few parts in a thousand)."""
    if not model.trafo_rating_hv_ka.size:
        return 1.0
    scale = 1.0
    for _ in range(3):
        bus_mw, bus_mvar = bus_powers(model, np.array([scale]))
        loading = float(np.nanmax(solve_day(model, bus_mw, bus_mvar).trafo_loading))
        if not np.isfinite(loading) or loading <= 0:
            return scale
        scale *= BASE_PEAK_TRAFO_LOADING / loading
    return scale


def _spread(model: FeederModel, columns: list[npt.NDArray[np.bool_]]) -> sp.csr_matrix:
    """Buses x sites: each site's kW shared among its loads by their rated power, in MW."""
    n_bus = model.n_buses
    matrix = np.zeros((n_bus, len(columns)))
    for j, loads in enumerate(columns):
        rated = np.where(loads, model.load_mw, 0.0)
        if rated.sum() <= 0:  # loads of no rated power: shared evenly
            rated = loads.astype(np.float64)
        np.add.at(matrix[:, j], model.load_bus, rated / rated.sum() / KW_PER_MW)
    return sp.csr_matrix(matrix)


def base_load_scale(base_load_kw: FloatArray, steps_per_day: int) -> FloatArray:
    """The city's base load per step over its peak in the reported day (the feeders' own
    loads follow it)."""
    peak = float(np.max(base_load_kw[:steps_per_day])) if base_load_kw.size else 0.0
    if peak <= 0:
        return np.ones(base_load_kw.size)
    return np.asarray(base_load_kw / peak, dtype=np.float64)


def feeder_day(feeder: Feeder, site_power_kw: FloatArray, load_scale: FloatArray) -> FeederDay:
    """``feeder``'s AC power flow at every step: ``site_power_kw`` is every site's net power
    (the case's sites x steps, + charging), ``load_scale`` the city's base load per step
    over its peak (1.0 at the peak hour)."""
    charging_mw = feeder.site_to_bus_mw @ site_power_kw[feeder.site_rows]
    shape = feeder.base_scale * load_scale
    bus_mw, bus_mvar = bus_powers(feeder.model, shape, np.asarray(charging_mw))
    flow = solve_day(feeder.model, bus_mw, bus_mvar)
    return _day(feeder, flow)


def _day(feeder: Feeder, flow: FlowResult) -> FeederDay:
    solved = flow.converged

    def worst(values: FloatArray, reduce: Callable[..., FloatArray]) -> FloatArray:
        """Per step, over the elements (an isolated bus's NaN left out); NaN where the
        power flow found no solution."""
        out = np.full(values.shape[1], np.nan)
        if values.shape[0] == 0:
            out[solved] = 0.0
        elif solved.any():
            out[solved] = reduce(values[:, solved], axis=0)
        return out

    return FeederDay(
        name=feeder.name,
        kind=feeder.kind,
        max_trafo_loading=worst(flow.trafo_loading, np.nanmax),
        max_line_loading=worst(flow.line_loading, np.nanmax),
        min_vm_pu=worst(flow.vm_pu, np.nanmin),
        max_vm_pu=worst(flow.vm_pu, np.nanmax),
        converged=solved,
    )
