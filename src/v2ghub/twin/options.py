"""A scenario and a regulation offer from the command line's options, checked together."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from v2ghub import defaults
from v2ghub.errors import InputError
from v2ghub.scenarios.signals_csv import load_frequency_csv, load_signal_csv
from v2ghub.sim.regulation_service import DEFAULT_HOURS, RegulationOffer
from v2ghub.twin.scenario import Scenario


def names(text: str | None) -> tuple[str, ...] | None:
    """A comma-separated list (``None`` stays ``None``)."""
    if not text:
        return None
    return tuple(part.strip() for part in text.split(",") if part.strip())


def scenario_from_options(
    *,
    scenario_file: Path | None = None,
    sessions: Path | None = None,
    sites: Path | None = None,
    city: str | None = None,
    cities: str | None = None,
    vehicles_per_city: int | None = None,
    seed: int | None = None,
    date: dt.date | None = None,
    planners: str | None = None,
    wear: str | None = None,
    pilot_rules: bool = False,
    feeders: int | None = None,
    feeder_network: Path | None = None,
) -> Scenario:
    """The scenario ``v2ghub simulate`` runs: the file's (or the shipped one) with the
    options applied, and a user's sessions read and checked when given."""
    base = Scenario.from_toml(scenario_file) if scenario_file else Scenario.pilot_cities()
    scenario = base.replace(
        vehicles_per_city=vehicles_per_city,
        seed=seed,
        date=date,
        planners=names(planners),
        cities=(city,) if city else names(cities),
        wear=wear,
        pilot_rules=pilot_rules or None,
        feeders=feeders,
        feeder_network=feeder_network,
    )
    if sessions is None:
        if sites is not None:
            raise InputError("--sites applies to --sessions only")
        return scenario
    if vehicles_per_city is not None:
        raise InputError("--vehicles applies to synthetic fleets, not to --sessions")
    if len(scenario.cities) != 1:
        raise InputError("--sessions needs --city NAME (the city whose tariff applies)")
    return Scenario.from_sessions(sessions, city=scenario.cities[0], sites=sites, base=scenario)


def regulation_from_options(
    *,
    regulation: bool = False,
    hours: str | None = None,
    kind: str = "dynamic",
    signal_file: Path | None = None,
    frequency_file: Path | None = None,
    frequency_response: bool = True,
    seed: int,
) -> RegulationOffer | None:
    """The regulation offer the options ask for, if any: local ``hours`` (comma-separated;
    default 10,11,19,20), a synthetic signal of ``kind`` or the ``signal_file``'s, and
    droop on the ``frequency_file``'s trace (else a synthetic one) unless turned off."""
    if all(option is None for option in (hours, signal_file, frequency_file)) and not regulation:
        return None
    chosen: tuple[int, ...] = DEFAULT_HOURS
    if hours is not None:
        try:
            chosen = tuple(int(h) for h in hours.split(","))
            RegulationOffer(hours=chosen)
        except ValueError:
            raise InputError(
                f"--regulation-hours must be local hours 0-23, comma-separated, not {hours!r}"
            ) from None
    signal = load_signal_csv(signal_file) if signal_file else None
    frequency = load_frequency_csv(frequency_file) if frequency_file else None
    step_s = signal.step_s if signal is not None else defaults.REGULATION_SIGNAL_STEP_S
    if frequency is not None and signal is not None and frequency.step_s != signal.step_s:
        raise InputError(
            f"the frequency file's step ({frequency.step_s:g} s) differs from the signal "
            f"file's ({signal.step_s:g} s)",
            file=frequency_file,
        )
    if frequency is not None and signal is None:
        step_s = frequency.step_s
    try:
        return RegulationOffer(
            hours=chosen,
            seed=seed,
            signal="traditional" if kind == "traditional" else "dynamic",
            step_s=step_s,
            frequency_response=frequency_response,
            signal_trace=signal,
            frequency_trace=frequency,
        )
    except ValueError as error:
        raise InputError(str(error)) from None
