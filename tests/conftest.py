"""Database fixtures: every store test runs on SQLite and on PostgreSQL.

PostgreSQL is found through ``V2GHUB_TEST_DATABASE_URL`` (default: the local server with
trust authentication). Each test gets a schema of its own, named in ``search_path`` and
dropped afterwards, so reruns and parallel tests never meet. An unreachable server makes
the PostgreSQL tests fail, not skip: CI provides one.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from v2ghub.store.repository import Store

POSTGRESQL_TEST_URL = os.environ.get(
    "V2GHUB_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
BACKENDS = ("sqlite", "postgresql")


def postgresql_admin_url() -> sa.URL:
    return make_url(POSTGRESQL_TEST_URL).set(drivername="postgresql+psycopg")


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL to an empty database of each back end."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'v2ghub.sqlite3'}"
        return
    schema_name = f"v2ghub_test_{uuid.uuid4().hex[:16]}"
    admin = sa.create_engine(postgresql_admin_url())
    try:
        with admin.begin() as connection:
            connection.execute(sa.text(f'CREATE SCHEMA "{schema_name}"'))
        url = postgresql_admin_url().update_query_dict({"options": f"-csearch_path={schema_name}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as connection:
            connection.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema_name}" CASCADE'))
        admin.dispose()


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    """A migrated, empty store on each back end."""
    with Store.open(database_url=database_url) as opened:
        yield opened
