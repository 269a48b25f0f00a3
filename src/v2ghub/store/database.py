"""Where the database lives and how it is opened: SQLite by default, PostgreSQL by URL.

SQLite runs in write-ahead-log mode with ``synchronous=FULL``: a commit survives a power
cut once it has returned, which the OCPP server relies on before it acknowledges a meter
value. PostgreSQL goes through psycopg 3. The schema is brought to the newest revision by
the alembic migrations shipped inside the package (:func:`migrate`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, Engine, make_url

from v2ghub.defaults import DATA_DIR
from v2ghub.errors import InputError

DEFAULT_DATA_DIR = DATA_DIR
SQLITE_FILE_NAME = "v2ghub.sqlite3"
SQLITE_BUSY_TIMEOUT_MS = 10_000
"""How long a SQLite writer waits for another writer's lock before it fails (ms)."""
MIGRATIONS_DIR = Path(__file__).parent / "migrations"
WRITE_OPTION = "v2ghub_write"
"""Execution option marking a connection that writes: SQLite takes the write lock at BEGIN
(``BEGIN IMMEDIATE``) so two writers never deadlock upgrading a read lock."""
STORAGE_FULL = "storage full"
STORAGE_READ_ONLY = "storage read-only"
STORAGE_FAILING = "storage failing"
_SQLITE_PROBLEMS = {13: STORAGE_FULL, 8: STORAGE_READ_ONLY, 10: STORAGE_FAILING}
"""SQLite's primary result codes SQLITE_FULL, SQLITE_READONLY and SQLITE_IOERR."""
_POSTGRES_PROBLEMS = {"53100": STORAGE_FULL, "25006": STORAGE_READ_ONLY}
"""PostgreSQL's SQLSTATE disk_full and read_only_sql_transaction."""


class StorageError(RuntimeError):
    """The database cannot take a write where it lives: its disk is full, it is read-only
    or its disk fails. The write's transaction was rolled back whole: nothing of it is
    stored. ``problem`` is one of :data:`STORAGE_FULL`, :data:`STORAGE_READ_ONLY`,
    :data:`STORAGE_FAILING`."""

    def __init__(self, problem: str, *, url: str, reason: str) -> None:
        self.problem = problem
        super().__init__(f"{problem}: {reason} ({url}); nothing was written")


def storage_problem(error: BaseException) -> str | None:
    """What of the storage ``error`` says is wrong (:data:`STORAGE_FULL`...), or ``None``
    for any other error: read from SQLite's result code or PostgreSQL's SQLSTATE, not
    from the wording of the message."""
    driver_error = getattr(error, "orig", None) or error
    sqlite_code = getattr(driver_error, "sqlite_errorcode", None)
    if isinstance(sqlite_code, int):
        return _SQLITE_PROBLEMS.get(sqlite_code & 0xFF)  # extended codes keep it in the low byte
    sqlstate = getattr(driver_error, "sqlstate", None)
    if isinstance(sqlstate, str):
        return _POSTGRES_PROBLEMS.get(sqlstate)
    return None


def storage_error(error: BaseException, *, url: str) -> StorageError | None:
    """``error`` as a :class:`StorageError` when it is about the storage, else ``None``."""
    problem = storage_problem(error)
    if problem is None:
        return None
    driver_error = getattr(error, "orig", None) or error
    reason = " ".join(str(driver_error).split()) or type(driver_error).__name__
    return StorageError(problem, url=url, reason=reason)


def resolve_url(*, data_dir: Path | None, database_url: str | None) -> str:
    """The database URL to use: ``database_url`` if given, else a SQLite file in ``data_dir``.

    ``data_dir`` defaults to ``v2ghub-data`` in the current directory and is created when
    missing; the file is ``v2ghub.sqlite3`` inside it.
    """
    if database_url:
        return database_url
    folder = data_dir if data_dir is not None else DEFAULT_DATA_DIR
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(folder / SQLITE_FILE_NAME).resolve()}"


def masked(url: str | URL) -> str:
    """The URL as it may be shown: the password replaced by ``***``."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "<unparsable database URL>"


def _normalise(url: str) -> URL:
    try:
        parsed = make_url(url)
    except sa.exc.ArgumentError as error:
        raise InputError(f"cannot open database {masked(url)}: {error}") from None
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        # Only psycopg 3 is installed; "postgresql://" would ask for psycopg2.
        return parsed.set(drivername="postgresql+psycopg")
    if backend == "sqlite":
        return parsed
    raise InputError(
        f"cannot open database {masked(parsed)}: unsupported kind {backend!r} "
        "(use sqlite:///FILE or postgresql://USER@HOST/DB)"
    )


def is_in_memory(url: str | URL) -> bool:
    """Whether ``url`` is a SQLite database in memory (only the process that made it
    can open it)."""
    parsed = make_url(url) if isinstance(url, str) else url
    database = parsed.database or ""
    return parsed.get_backend_name() == "sqlite" and (
        database in ("", ":memory:") or database.startswith("file::memory:")
    )


def open_engine(url: str) -> Engine:
    """An engine for ``url``, checked by connecting once.

    SQLite connections get ``journal_mode=WAL``, ``synchronous=FULL``, ``foreign_keys=ON``
    and a busy timeout; ``postgresql://`` URLs are served by psycopg 3. A URL that cannot
    be opened raises :class:`~v2ghub.errors.InputError` with one line naming the URL
    (password masked) and the reason.
    """
    parsed = _normalise(url)
    engine_options: dict[str, Any] = {}
    if parsed.get_backend_name() == "postgresql":
        engine_options["pool_pre_ping"] = True
    engine = sa.create_engine(parsed, **engine_options)
    if parsed.get_backend_name() == "sqlite":
        _configure_sqlite(engine)
    try:
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
    except sa.exc.DBAPIError as error:
        engine.dispose()
        reason = " ".join(str(error.orig).split()) or type(error.orig).__name__
        raise InputError(f"cannot open database {masked(parsed)}: {reason}") from None
    return engine


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control from the sqlite3 module (Python < 3.12 begins
        # transactions only before DML); SQLAlchemy's "begin" event below emits BEGIN.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = FULL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        writes = connection.get_execution_options().get(WRITE_OPTION, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if writes else "BEGIN")


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision (alembic ``upgrade head``); harmless to repeat."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.connect() as connection:
        connection.execution_options(**{WRITE_OPTION: True})
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
        connection.commit()
