"""``v2ghub token`` on a store that cannot take writes: one line, and nothing changed.

The full disk is made at the database driver, as in :mod:`tests.test_live_hostile_storage`
(every statement that writes fails with SQLite's own ``database or disk is full``); the
read-only store is real.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from v2ghub.cli import main
from v2ghub.store.api_tokens import Role, new_token
from v2ghub.store.repository import Store

from .test_live_hostile_storage import Disk, disk, read_only_url

__all__ = ["disk", "read_only_url"]  # that module's fixtures, used here by name

MADE_AT = datetime(2026, 7, 1, 9, 0, tzinfo=UTC)


def _one_storage_line(err: str, problem: str) -> None:
    assert err.count("\n") == 1
    assert err.startswith(f"error: {problem}: ")
    assert err.rstrip().endswith("nothing was written")


def test_token_add_on_a_full_disk_is_one_line_and_prints_no_token(
    tmp_path: Path, disk: Disk, capsys: pytest.CaptureFixture[str]
) -> None:
    Store.open(data_dir=tmp_path).close()  # the database exists; the disk fills up
    with disk.filled():
        status = main(["token", "add", "ops", "--role", "admin", "--data-dir", str(tmp_path)])
    assert status == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # a token that was not stored is never shown
    _one_storage_line(captured.err, "storage full")
    assert "database or disk is full (sqlite:///" in captured.err
    with Store.open(data_dir=tmp_path) as store:
        assert store.tokens() == []


def test_token_revoke_on_a_full_disk_is_one_line_and_the_token_still_works(
    tmp_path: Path, disk: Disk, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = new_token()
    with Store.open(data_dir=tmp_path) as store:
        store.add_token("ops", role=Role.ADMIN, token=secret, at=MADE_AT)
    with disk.filled():
        assert main(["token", "revoke", "ops", "--data-dir", str(tmp_path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    _one_storage_line(captured.err, "storage full")
    with Store.open(data_dir=tmp_path) as store:
        kept = store.token(secret)
    assert kept is not None
    assert kept.name == "ops"
    assert kept.revoked_at is None


def test_token_add_on_a_read_only_store_is_one_line(
    read_only_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["token", "add", "ops", "--role", "admin", "--database-url", read_only_url]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    _one_storage_line(captured.err, "storage read-only")


def test_token_list_reads_a_read_only_store(
    read_only_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Listing writes nothing, so a store that takes no write still answers it.
    assert main(["token", "list", "--database-url", read_only_url]) == 0
    assert capsys.readouterr().out == ""
