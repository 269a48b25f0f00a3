"""Site limits from CSV: values, blanks, and bad input."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from v2ghub.errors import InputError
from v2ghub.scenarios.sites_csv import load_sites_csv

SITES = ("a", "b", "c")


def _write(tmp_path: Path, text: str, *, bom: bool = False) -> Path:
    path = tmp_path / "sites.csv"
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return path


def test_limits_blanks_and_unlisted_sites(tmp_path: Path) -> None:
    path = _write(tmp_path, "site_id,import_limit_kw,export_limit_kw\na,120,80\nb,,50\n", bom=True)
    limits = load_sites_csv(path, site_ids=SITES)
    assert limits.import_limit_kw.tolist() == [120.0, math.inf, math.inf]
    assert limits.export_limit_kw.tolist() == [80.0, 50.0, math.inf]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("site_id,import_limit_kw\na,1\n", r"row 1, field export_limit_kw: missing column"),
        ("site_id,import_limit_kw,export_limit_kw,x\n", r"row 1, field x: unknown column"),
        ("site_id,import_limit_kw,export_limit_kw\nz,1,1\n", r"row 2, field site_id: site 'z'"),
        (
            "site_id,import_limit_kw,export_limit_kw\na,1,1\na,2,2\n",
            r"row 3, field site_id: duplicate",
        ),
        (
            "site_id,import_limit_kw,export_limit_kw\na,-1,1\n",
            r"row 2, field import_limit_kw: must be >= 0",
        ),
        (
            "site_id,import_limit_kw,export_limit_kw\na,inf,1\n",
            r"row 2, field import_limit_kw: must be a finite",
        ),
        (
            "site_id,import_limit_kw,export_limit_kw\na,1e309,1\n",
            r"field import_limit_kw: must be a finite",
        ),
        (
            "site_id,import_limit_kw,export_limit_kw\na,lots,1\n",
            r"row 2, field import_limit_kw: not a number",
        ),
        ("site_id,import_limit_kw,export_limit_kw\na,1\n", r"row 2: expected 3 cells, got 2"),
    ],
)
def test_bad_sites_files_name_row_and_field(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        load_sites_csv(_write(tmp_path, text), site_ids=SITES)


def test_non_utf8_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "sites.csv"
    path.write_bytes(b"site_id,import_limit_kw,export_limit_kw\n\xff,1,1\n")
    with pytest.raises(InputError, match="not UTF-8"):
        load_sites_csv(path, site_ids=SITES)


def test_other_sites_are_added_when_asked(tmp_path: Path) -> None:
    path = tmp_path / "sites.csv"
    path.write_text("site_id,import_limit_kw,export_limit_kw\ndepot,250,\nnew,100,40\n")
    limits = load_sites_csv(path, site_ids=("depot", "home"), other_sites=True)
    assert limits.site_ids == ("depot", "home", "new")
    assert limits.import_limit_kw.tolist() == [250.0, math.inf, 100.0]
    assert limits.export_limit_kw.tolist() == [math.inf, math.inf, 40.0]
    with pytest.raises(InputError, match=r"row 3, field site_id: site 'new' has no sessions"):
        load_sites_csv(path, site_ids=("depot",))
