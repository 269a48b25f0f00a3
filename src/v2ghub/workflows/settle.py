"""``v2ghub settle``: a run folder or a live day into the ledger, statements and totals."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from v2ghub.errors import InputError
from v2ghub.scenarios.catalog import city_name, pilot_cities
from v2ghub.settlement.contracts import Contracts
from v2ghub.store.database import DEFAULT_DATA_DIR, SQLITE_FILE_NAME
from v2ghub.store.repository import Store


def check_settle_options(
    *,
    run: Path | None,
    live: bool,
    planners: str | None,
    data_dir: Path | None,
    database_url: str | None,
    day: date | None,
    city: str | None,
) -> None:
    """RUN_DIR or ``--live`` with its options, never both nor a mix."""
    live_only: dict[str, object] = {"--data-dir": data_dir, "--database-url": database_url}
    live_only |= {"--day": day, "--city": city}
    if live == (run is not None):
        raise InputError("settle takes RUN_DIR (a simulate run) or --live, exactly one")
    if not live:
        given = [option for option, value in live_only.items() if value is not None]
        if given:
            raise InputError(f"{', '.join(given)} apply to --live only")
        return
    if planners:
        raise InputError("--planners applies to RUN_DIR only (live data has one period)")
    missing = [option for option in ("--day", "--city") if live_only[option] is None]
    if missing:
        raise InputError(f"--live needs {' and '.join(missing)}")
    if data_dir is not None and database_url is not None:
        raise InputError("give --data-dir or --database-url, not both")


def check_ledger_file(ledger: Path) -> None:
    """Refuse a ledger file that settling would spoil: anything but a regular file, or an
    existing file that is not a v2ghub ledger (another program's SQLite database would
    get the ledger's tables; a text file is no database at all). A missing or empty file
    becomes a new ledger."""
    if not ledger.exists() or (ledger.is_file() and ledger.stat().st_size == 0):
        return
    if not ledger.is_file():
        raise InputError("is not a regular file; name a ledger file", file=ledger)
    from v2ghub.settlement.ledger import Ledger  # noqa: PLC0415 - settle only

    Ledger.open_read_only(ledger).close()  # one line naming the file if not a ledger


def settle_folder(
    run: Path,
    *,
    out: Path,
    planners: list[str] | None = None,
    contracts: Path | None = None,
    rates: Path | None = None,
    ledger: Path | None = None,
    on_period: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Settle a ``v2ghub simulate`` folder into ``out``; what ``settlement.json`` holds."""
    from v2ghub.settlement.settle import settle_run  # noqa: PLC0415 - settle only

    check_ledger_file(ledger if ledger is not None else out / "ledger.sqlite")
    return settle_run(
        run,
        out=out,
        planners=planners,
        contracts=Contracts.load(contracts) if contracts is not None else Contracts(),
        rates_file=rates,
        ledger_path=ledger,
        on_period=on_period,
    )


def settle_live_day(
    *,
    day: date,
    city: str,
    out: Path,
    data_dir: Path | None = None,
    database_url: str | None = None,
    contracts: Path | None = None,
    rates: Path | None = None,
    ledger: Path | None = None,
) -> dict[str, Any]:
    """Settle a city's local day of the live store (settlement sees it through a
    protocol); what ``settlement.json`` holds."""
    from v2ghub.settlement.live_settle import settle_live  # noqa: PLC0415 - settle only

    name = city_name(city)
    terms = Contracts.load(contracts) if contracts is not None else Contracts()
    check_ledger_file(ledger if ledger is not None else out / "ledger.sqlite")
    if database_url is None:
        folder = data_dir if data_dir is not None else DEFAULT_DATA_DIR
        if not (folder / SQLITE_FILE_NAME).is_file():
            raise InputError("no live database here (v2ghub serve writes one)", file=folder)
    try:
        store = Store.open(data_dir=data_dir, database_url=database_url)
    except SQLAlchemyError as error:
        raise InputError(f"cannot open the live database ({type(error).__name__})") from None
    with store:
        return settle_live(
            store,
            day=day,
            city=name,
            tariff=pilot_cities()[name].tariff(),
            out=out,
            contracts=terms,
            rates_file=rates,
            ledger_path=ledger,
            store_name=store.url,
        )
