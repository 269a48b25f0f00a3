"""Seeded synthetic fleets for a city's pilot district, fully vectorised (10 to 10 million).

Every vehicle has one plug-in session on the simulated day. The mix and the distributions
are assumptions for a Chinese pilot district, chosen to match the shape of public charging
data (evening home arrivals, morning workplace arrivals, short daytime public sessions);
all are parameters in :class:`~v2ghub.scenarios.config.FleetMix`.

======================  ==========  ====================================  ==================
kind (share)            charger     arrival, local time                   stay
======================  ==========  ====================================  ==================
home (60%)              7 kW AC     normal(18.5 h, 1.5 h), 15:00-23:45    until next day
                                                                          normal(7.5 h, 1 h),
                                                                          5:30-10:00
workplace (25%)         20 kW DC    normal(8.75 h, 0.75 h), 7:00-11:00    normal(9 h, 1 h),
                                                                          6-11 h
public (15%)            60 kW DC    uniform 7:00-22:00                    lognormal, median
                                                                          1.5 h, 0.5-4 h
======================  ==========  ====================================  ==================

State of charge at arrival: normal(0.45, 0.15) at home, normal(0.5, 0.15) at work,
normal(0.3, 0.1) at public stations, clipped to 0.05-0.95. Targets: ``home_soc_target``
(0.9) at home, ``away_soc_target`` (0.8) elsewhere; SoC window ``soc_min``-``soc_max``.
Battery sizes, cell chemistries and V2G capability come from the shipped vehicle models by
their share.
V2G opt-in is drawn per session with the kind's opt-in share, only for capable vehicles;
a vehicle that opts in may discharge at its charger's power.

Sites: homes share residential transformers (``homes_per_transformer`` homes, limit
``home_transformer_share`` of their chargers' total power), workplaces share a site limit
the same way, and public stations take ``public_sessions_per_station`` sessions a day each
with a fixed connection limit. Export limits equal import limits.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from v2ghub.model.fleet import ChargerKind, Chemistry, Fleet
from v2ghub.model.sites import SiteLimits
from v2ghub.scenarios.catalog import VehicleModelData
from v2ghub.scenarios.config import FleetMix
from v2ghub.units import MINUTES_PER_HOUR, SECONDS_PER_HOUR, SECONDS_PER_MINUTE

FloatArray = npt.NDArray[np.float64]

HOURS_PER_DAY = 24


@dataclass(frozen=True)
class SyntheticFleet:
    """A generated fleet and the sites its sessions connect to."""

    fleet: Fleet
    sites: SiteLimits


def _normal(
    rng: np.random.Generator, *, mean: float, sd: float, low: float, high: float, n: int
) -> FloatArray:
    return np.clip(rng.normal(mean, sd, n), low, high)


def _site_groups(
    index_in_kind: npt.NDArray[np.int64], group_size: int
) -> tuple[npt.NDArray[np.int64], int]:
    groups = index_in_kind // group_size
    return groups, int(groups.max()) + 1 if groups.size else 0


def generate_fleet(
    *,
    n_vehicles: int,
    city: str,
    day: date,
    timezone: str,
    mix: FleetMix,
    models: tuple[VehicleModelData, ...],
    rng: np.random.Generator,
) -> SyntheticFleet:
    """Generate ``n_vehicles`` sessions arriving on ``day`` in ``city``."""
    n = n_vehicles
    kind = rng.choice(
        np.array([ChargerKind.HOME, ChargerKind.WORKPLACE, ChargerKind.PUBLIC], dtype=np.int8),
        size=n,
        p=[mix.home_share, mix.workplace_share, mix.public_share],
    )
    home = kind == ChargerKind.HOME
    work = kind == ChargerKind.WORKPLACE
    public = kind == ChargerKind.PUBLIC

    shares = np.array([m.share for m in models])
    model = rng.choice(len(models), size=n, p=shares / shares.sum())
    battery_kwh = np.array([m.battery_kwh for m in models])[model]
    ac_kw = np.array([m.ac_max_kw for m in models])[model]
    dc_kw = np.array([m.dc_max_kw for m in models])[model]
    capable = np.array([m.v2g_capable for m in models])[model]
    chemistry = np.array([Chemistry[m.chemistry] for m in models], dtype=np.int8)[model]

    arrival_h = np.where(
        home,
        _normal(rng, mean=18.5, sd=1.5, low=15.0, high=23.75, n=n),
        np.where(
            work,
            _normal(rng, mean=8.75, sd=0.75, low=7.0, high=11.0, n=n),
            rng.uniform(7.0, 22.0, n),
        ),
    )
    stay_h = np.where(
        home,
        HOURS_PER_DAY + _normal(rng, mean=7.5, sd=1.0, low=5.5, high=10.0, n=n) - arrival_h,
        np.where(
            work,
            _normal(rng, mean=9.0, sd=1.0, low=6.0, high=11.0, n=n),
            np.clip(rng.lognormal(np.log(1.5), 0.5, n), 0.5, 4.0),
        ),
    )
    soc_arrival = np.where(
        home,
        _normal(rng, mean=0.45, sd=0.15, low=0.05, high=0.95, n=n),
        np.where(
            work,
            _normal(rng, mean=0.5, sd=0.15, low=0.05, high=0.95, n=n),
            _normal(rng, mean=0.3, sd=0.1, low=0.05, high=0.95, n=n),
        ),
    )
    soc_target = np.where(home, mix.home_soc_target, mix.away_soc_target)
    charger_kw = np.where(
        home,
        np.minimum(ac_kw, mix.home_charger_kw),
        np.minimum(dc_kw, np.where(work, mix.workplace_charger_kw, mix.public_charger_kw)),
    )
    opt_in_share = np.where(
        home, mix.home_opt_in, np.where(work, mix.workplace_opt_in, mix.public_opt_in)
    )
    opt_in = capable & (rng.random(n) < opt_in_share)
    efficiency = np.where(home, mix.ac_efficiency, mix.dc_efficiency)

    midnight = datetime(day.year, day.month, day.day, tzinfo=ZoneInfo(timezone))
    start_s = int(midnight.timestamp())
    # Times to the whole minute, as chargers report them.
    arrival_min = np.round(arrival_h * MINUTES_PER_HOUR).astype(np.int64)
    stay_min = np.maximum(np.round(stay_h * MINUTES_PER_HOUR).astype(np.int64), 1)
    arrival_s = start_s + arrival_min * SECONDS_PER_MINUTE
    departure_s = arrival_s + stay_min * SECONDS_PER_MINUTE

    # Sites: consecutive sessions of a kind share a transformer, workplace or station.
    site_index = np.zeros(n, dtype=np.int64)
    limits: list[FloatArray] = []
    site_ids: list[str] = []
    offset = 0
    for mask, label, size, limit in (
        (home, "home-transformer", mix.homes_per_transformer, None),
        (work, "workplace", mix.workplace_chargers_per_site, None),
        (public, "public-station", mix.public_sessions_per_station, mix.public_station_limit_kw),
    ):
        members = np.flatnonzero(mask)
        groups, n_groups = _site_groups(np.arange(members.size, dtype=np.int64), size)
        site_index[members] = offset + groups
        if limit is None:
            share = (
                mix.home_transformer_share
                if label == "home-transformer"
                else mix.workplace_site_share
            )
            connected = np.bincount(groups, weights=charger_kw[members], minlength=n_groups)
            limits.append(np.asarray(share * connected, dtype=np.float64))
        else:
            limits.append(np.full(n_groups, limit))
        # One Python iteration per site (a few per hundred vehicles) for its name only.
        site_ids.extend(f"{city}-{label}-{g}" for g in range(n_groups))
        offset += n_groups
    limit_kw = np.concatenate(limits) if limits else np.zeros(0)

    fleet = Fleet(
        site_index=site_index,
        battery_kwh=battery_kwh.astype(np.float64),
        soc_arrival=soc_arrival,
        soc_target=np.asarray(soc_target, dtype=np.float64),
        soc_min=np.full(n, mix.soc_min),
        soc_max=np.full(n, mix.soc_max),
        max_charge_kw=charger_kw.astype(np.float64),
        max_discharge_kw=np.where(capable, charger_kw, 0.0),
        charge_efficiency=efficiency,
        discharge_efficiency=efficiency.copy(),
        arrival_s=arrival_s,
        departure_s=departure_s,
        v2g_opt_in=opt_in,
        charger_kind=kind,
        chemistry=chemistry,
    )
    sites = SiteLimits(tuple(site_ids), limit_kw, limit_kw.copy())
    return SyntheticFleet(fleet=fleet, sites=sites)


def hours_of_day(epoch_s: npt.NDArray[np.int64], midnight_s: int) -> FloatArray:
    """Hours since the day's local midnight (for reports and tests)."""
    return (epoch_s - midnight_s) / SECONDS_PER_HOUR
