"""``v2ghub serve``'s regulation and frequency-response options, and what they start."""

from __future__ import annotations

import argparse
from pathlib import Path

from v2ghub.errors import InputError
from v2ghub.live.clock import Clock
from v2ghub.live.grid_services import GridServices
from v2ghub.live.regulation_files import load_commitments_csv, store_commitments
from v2ghub.live.regulation_shares import FrequencyResponse
from v2ghub.live.regulation_signal import CallStation, SignalBroadcaster
from v2ghub.regulation.frequency_response import DEFAULT_DEADBAND_HZ, DEFAULT_DROOP
from v2ghub.scenarios.signals_csv import load_signal_csv
from v2ghub.store.repository import Store


def add_regulation_options(serve: argparse.ArgumentParser) -> None:
    """Add the options of live regulation and frequency response to ``serve``."""
    group = serve.add_argument_group(
        "regulation and frequency response (OCPP 2.1 V2X stations)",
        "Commitments come from the web API (grid role) or --regulation-commitments; the "
        "signal from the web API or --regulation-signal. Each participating EVSE gets a "
        "CentralFrequency profile with its share and follows the AFRRSignal broadcast.",
    )
    group.add_argument(
        "--regulation-signal",
        type=Path,
        metavar="FILE",
        help="signal CSV (time, signal -1..1), replayed from the start of each commitment "
        "and looped; the API's posted signal overrides it while it is fresh",
    )
    group.add_argument(
        "--regulation-commitments",
        type=Path,
        metavar="FILE",
        help="commitments CSV (starts_at, ends_at, capacity_kw) added to the store at start",
    )
    group.add_argument(
        "--frequency-response-kw",
        type=float,
        default=0.0,
        help="rated primary frequency response of the fleet, kW each way, given by 2.1 V2X "
        "EVSEs in LocalFrequency mode outside committed hours (default 0: off)",
    )
    group.add_argument(
        "--droop",
        type=float,
        default=DEFAULT_DROOP,
        help=f"droop of the frequency response (default {DEFAULT_DROOP:g})",
    )
    group.add_argument(
        "--frequency-deadband-hz",
        type=float,
        default=DEFAULT_DEADBAND_HZ,
        help=f"deadband of the frequency response, Hz (default {DEFAULT_DEADBAND_HZ:g})",
    )


def grid_services_from_args(
    args: argparse.Namespace, store: Store, *, clock: Clock, call_station: CallStation
) -> GridServices:
    """The grid services ``serve`` runs; the commitments file's rows are stored first.

    Raises
    ------
    InputError
        A file is unreadable or wrong (naming file, row and column), or a setting is out
        of range.
    """
    droop: float = args.droop
    deadband_hz: float = args.frequency_deadband_hz
    rated_kw: float = args.frequency_response_kw
    if not 0 < droop <= 1:
        raise InputError(f"--droop must be within (0, 1], got {droop:g}")
    if not deadband_hz >= 0:
        raise InputError(f"--frequency-deadband-hz must be >= 0, got {deadband_hz:g}")
    if not rated_kw >= 0:
        raise InputError(f"--frequency-response-kw must be >= 0, got {rated_kw:g}")
    signal_path: Path | None = args.regulation_signal
    signal_file = None if signal_path is None else load_signal_csv(signal_path)
    if args.regulation_commitments is not None:
        planned = load_commitments_csv(args.regulation_commitments)
        store_commitments(store, args.regulation_commitments, planned, at=clock.now())
    broadcaster = SignalBroadcaster(
        clock=clock,
        call_station=call_station,
        store=store,
        signal_file=signal_file,
        file_name="" if signal_path is None else signal_path.name,
    )
    return GridServices(
        store,
        frequency_response=FrequencyResponse(
            rated_kw=rated_kw, deadband_hz=deadband_hz, droop=droop
        ),
        broadcaster=broadcaster,
    )
