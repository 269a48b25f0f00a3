"""The parser of the live aggregator's commands (``v2ghub serve``, ``station``, ``chargers``
and ``site``): their options and help, and nothing that runs them.

It imports nothing heavy, so ``v2ghub --help`` does not load the server, the planners or the
database; :mod:`v2ghub.live.commands` runs the commands. Every command that uses the store
takes the same ``--data-dir`` / ``--database-url``.
"""

from __future__ import annotations

import argparse
from datetime import datetime
from pathlib import Path

from v2ghub.choices import PLANNER_NAMES, shipped_city_names
from v2ghub.defaults import (
    API_PORT,
    DATA_DIR,
    DROOP,
    FREQUENCY_DEADBAND_HZ,
    LIVE_CITY,
    LIVE_CONTROL_INTERVAL_S,
    OCPP_PORT,
)

DEFAULT_DATA_DIR = DATA_DIR
DEFAULT_PORT = OCPP_PORT
DEFAULT_CITY = LIVE_CITY
LIVE_COMMANDS = ("serve", "station", "chargers", "site")


def store_options(parser: argparse.ArgumentParser) -> None:
    """Add the store's ``--data-dir`` and ``--database-url`` to ``parser``."""
    group = parser.add_argument_group("store")
    group.add_argument(
        "--data-dir",
        type=Path,
        default=DEFAULT_DATA_DIR,
        help=f"folder of the embedded SQLite database (default ./{DEFAULT_DATA_DIR})",
    )
    group.add_argument(
        "--database-url",
        help="a database URL instead, e.g. postgresql://user@host:5432/v2ghub",
    )


def _clock_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("simulated time (demonstrations)")
    group.add_argument(
        "--clock-start",
        type=_aware_time,
        help="run on a clock that starts at this instant, e.g. 2026-07-01T17:00+08:00",
    )
    group.add_argument(
        "--clock-speed",
        type=float,
        default=1.0,
        help="how many times faster than real time that clock runs (default 1)",
    )


def _openadr_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("OpenADR 2.0b VEN (grid signals from a VTN)")
    group.add_argument("--openadr-vtn-url", help="the VTN's URL; runs a VEN beside the server")
    group.add_argument("--openadr-ven-name", help="this VEN's name at the VTN")
    group.add_argument(
        "--openadr-resources",
        type=Path,
        help="CSV resource_id,site_id[,level_1_kw,level_2_kw,level_3_kw]: the VTN's resources "
        "as our sites (a site not listed is never dispatched)",
    )
    group.add_argument("--openadr-cert", type=Path, help="our certificate for signing (PEM)")
    group.add_argument("--openadr-key", type=Path, help="its private key (PEM)")
    group.add_argument("--openadr-vtn-fingerprint", help="the VTN certificate's fingerprint")
    group.add_argument(
        "--openadr-ca-file",
        type=Path,
        help="the certificate authority (PEM) the VTN's TLS certificate is checked against "
        "(OpenADR VTNs use the OpenADR Alliance's, not the system's); needed with "
        "--openadr-cert",
    )


def _aware_time(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO time: {text!r}") from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"give a time zone, e.g. {text}+08:00")
    return moment


def add_live_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``serve``, ``station`` and ``chargers`` to the ``v2ghub`` parser."""
    serve = commands.add_parser(
        "serve",
        help="run the live aggregator: an OCPP 2.1/2.0.1 server that plans and sends setpoints",
        description="Run the live aggregator: the OCPP server (CSMS) that registered charging "
        "stations connect to, and the control loop that plans the plugged vehicles with the "
        "same planners as the twin and sends each EVSE its setpoint. Stations connect to "
        "URL/<station id> with subprotocol ocpp2.1 or ocpp2.0.1 and Basic authentication "
        "(register them with `v2ghub station add`). Off loopback the server uses TLS "
        "(security profile 2), with a self-signed certificate in the data folder unless "
        "--certfile/--keyfile are given.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (0: any free one)")
    store_options(serve)
    serve.add_argument(
        "--planner",
        default="fast",
        choices=[name for name in PLANNER_NAMES if not name.startswith("mpc")],
        help="planner of the control loop (default fast)",
    )
    where = serve.add_mutually_exclusive_group()
    where.add_argument(
        "--city",
        help=f"shipped city for tariff, discharge prices and time zone (default {DEFAULT_CITY}): "
        + ", ".join(sorted(shipped_city_names())),
    )
    where.add_argument(
        "--scenario", type=Path, help="scenario TOML file: its first city and grid shape"
    )
    serve.add_argument(
        "--sites",
        type=Path,
        help="site limits CSV: site_id, import_limit_kw, export_limit_kw (a blank is no "
        "limit); a site not listed imports within its chargers' limits and exports nothing",
    )
    serve.add_argument(
        "--control-interval",
        type=float,
        default=LIVE_CONTROL_INTERVAL_S,
        help=f"seconds between plans (default {LIVE_CONTROL_INTERVAL_S:g})",
    )
    web = serve.add_argument_group("web API and dashboard")
    web.add_argument(
        "--api-host",
        default="127.0.0.1",
        help="address of the web API and dashboard (default loopback; HTTPS anywhere else)",
    )
    web.add_argument(
        "--api-port",
        type=int,
        default=API_PORT,
        help=f"port of the web API and dashboard (default {API_PORT}; 0: any free one)",
    )
    web.add_argument("--no-api", action="store_true", help="run without the web API")
    web.add_argument(
        "--ledger",
        type=Path,
        help="settlement ledger the API's statements read (what `v2ghub settle --live "
        "--ledger` posts; default DATA_DIR/ledger.sqlite)",
    )
    web.add_argument(
        "--show-run",
        type=Path,
        metavar="FOLDER",
        help="also show a finished `v2ghub simulate` run folder on the dashboard",
    )
    serve.add_argument("--certfile", type=Path, help="TLS certificate chain (PEM)")
    serve.add_argument("--keyfile", type=Path, help="TLS private key (PEM)")
    serve.add_argument(
        "--allow-profile-1",
        action="store_true",
        help="allow plain ws:// (OCPP security profile 1) on a non-loopback address",
    )
    serve.add_argument(
        "--failed-attempts-per-address",
        type=int,
        metavar="N",
        help="failed password attempts an address may make at once, and then each minute, "
        "before it is refused unchecked (default 20; 0: no limit). Raise it behind a "
        "reverse proxy, where every station has the proxy's address",
    )
    add_regulation_options(serve)
    serve.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        default="warning",
        help="what the server logs to stderr (default warning; debug says why each plan ran)",
    )
    _clock_options(serve)
    _openadr_options(serve)

    station = commands.add_parser(
        "station",
        help="register charging stations and manage their passwords",
        description="Register charging stations. A station's password is generated, printed "
        "once and stored only as a hash: configure it in the station as its "
        "BasicAuthPassword.",
    )
    actions = station.add_subparsers(dest="station_command", required=True, metavar="ACTION")
    add = actions.add_parser("add", help="register a station and print its password once")
    add.add_argument("station_id", metavar="ID", help="the station's identity (its URL path)")
    add.add_argument("--site", default="site-1", help="the site it belongs to (default site-1)")
    add.add_argument(
        "--v2x",
        action="store_true",
        help="the station may discharge (OCPP 2.1 stations; a 2.0.1 station only with this)",
    )
    add.add_argument(
        "--max-power-kw", type=float, default=11.0, help="power of one EVSE, kW (default 11)"
    )
    store_options(add)
    password = actions.add_parser(
        "password", help="give a station a new password (printed once; the old one stops working)"
    )
    password.add_argument("station_id", metavar="ID")
    store_options(password)
    listing = actions.add_parser("list", help="list registered stations")
    store_options(listing)
    _add_chargers_parser(commands)
    _add_site_parser(commands)


def _add_site_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    site = commands.add_parser(
        "site",
        help="grid events: set a site's connection limits for a while",
        description="Record a grid event for a running aggregator: a site's import and "
        "export limits (kW at its connection point) from --from until --until. `v2ghub "
        "serve` sees it within a second and re-plans; when the event ends, the site's "
        "configured limits (--sites) hold again. Give the server's --data-dir or "
        "--database-url.",
    )
    actions = site.add_subparsers(dest="site_command", required=True, metavar="ACTION")
    limit = actions.add_parser("limit", help="limit a site's import and export")
    limit.add_argument("site_id", metavar="SITE")
    limit.add_argument("--import-kw", type=float, help="import limit, kW (default: none)")
    limit.add_argument(
        "--export-kw", type=float, help="export (V2G) limit, kW (default: none; 0 stops V2G)"
    )
    limit.add_argument("--from", dest="starts_at", type=_aware_time, help="start (default: now)")
    limit.add_argument(
        "--until", dest="ends_at", type=_aware_time, help="end (default: until replaced)"
    )
    limit.add_argument("--reason", default="grid event", help="why, kept with the event")
    store_options(limit)


def _add_chargers_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    chargers = commands.add_parser(
        "chargers",
        help="simulate V2X charging stations with cars that speak OCPP to a server",
        description="Run N simulated charging stations in one process: vehicles arrive and "
        "leave, declare their needs (NotifyEVChargingNeeds, on OCPP 2.x), obey the charging "
        "profiles they get (discharging on OCPP 2.1 V2X stations, and on V2X 1.6 stations by "
        "negative limits) and send meter values. The stations (SIM0001...) are registered in "
        "the store with fresh passwords, so give the same --data-dir or --database-url as "
        "`v2ghub serve`. Ends after --duration or on Ctrl-C with a summary.",
    )
    chargers.add_argument("--count", type=int, default=10, help="stations (default 10)")
    chargers.add_argument(
        "--url", default=f"ws://127.0.0.1:{DEFAULT_PORT}", help="the server's URL (ws:// or wss://)"
    )
    store_options(chargers)
    chargers.add_argument(
        "--v201-share",
        type=float,
        default=0.25,
        help="share of the stations not speaking 1.6 that speak OCPP 2.0.1, charge-only "
        "(default 0.25)",
    )
    chargers.add_argument(
        "--v16-share",
        type=float,
        default=0.0,
        help="share of stations speaking OCPP 1.6J (default 0)",
    )
    chargers.add_argument(
        "--current-only-share",
        type=float,
        default=0.0,
        help="share of the AC OCPP 1.6 stations that take charging schedules in A only "
        "(default 0: in W)",
    )
    chargers.add_argument("--site", default="site-1", help="site of the stations (default site-1)")
    chargers.add_argument(
        "--max-power-kw", type=float, default=11.0, help="power of each station, kW (default 11)"
    )
    chargers.add_argument(
        "--meter-interval", type=float, default=10.0, help="seconds between meter values"
    )
    chargers.add_argument("--seed", type=int, default=0, help="seed of arrivals and vehicles")
    chargers.add_argument(
        "--duration",
        type=float,
        help="seconds to run, on the chargers' clock (default: until Ctrl-C)",
    )
    chargers.add_argument(
        "--ca-file", type=Path, help="certificate to trust for wss:// (the server's)"
    )
    frequency = chargers.add_mutually_exclusive_group()
    frequency.add_argument(
        "--frequency-file",
        type=Path,
        help="grid frequency CSV (columns time, frequency_hz) the stations measure in "
        "LocalFrequency mode, at the chargers' clock time (50 Hz outside the file)",
    )
    frequency.add_argument(
        "--frequency-seed",
        type=int,
        default=0,
        help="seed of the synthetic grid frequency used without --frequency-file (default 0)",
    )
    chargers.add_argument(
        "--regulation-sample-s",
        type=float,
        default=2.0,
        help="seconds between the meter samples of a station in a frequency mode (default 2)",
    )
    chargers.add_argument(
        "--regulation-report-s",
        type=float,
        default=10.0,
        help="seconds between the messages that carry those samples (default 10)",
    )
    _clock_options(chargers)


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
        default=DROOP,
        help=f"droop of the frequency response (default {DROOP:g})",
    )
    group.add_argument(
        "--frequency-deadband-hz",
        type=float,
        default=FREQUENCY_DEADBAND_HZ,
        help=f"deadband of the frequency response, Hz (default {FREQUENCY_DEADBAND_HZ:g})",
    )
