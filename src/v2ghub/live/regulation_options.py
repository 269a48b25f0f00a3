"""What ``v2ghub serve``'s regulation and frequency-response options start (the options
themselves are in :mod:`v2ghub.live.command_line`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from v2ghub.errors import InputError
from v2ghub.live.clock import Clock
from v2ghub.live.grid_services import GridServices
from v2ghub.live.regulation_files import load_commitments_csv, store_commitments
from v2ghub.live.regulation_shares import FrequencyResponse
from v2ghub.live.regulation_signal import CallStation, SignalBroadcaster
from v2ghub.scenarios.signals_csv import load_signal_csv
from v2ghub.store.repository import Store


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
