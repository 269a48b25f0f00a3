"""A user's site limits from CSV: ``site_id, import_limit_kw, export_limit_kw``.

A blank limit means no limit. Sites of the sessions file that are not listed have no limit;
a listed site that no session uses is refused, since it is most likely a typo.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import numpy as np

from v2ghub.errors import InputError
from v2ghub.model.sites import SiteLimits
from v2ghub.scenarios.csv_files import number_problem

COLUMNS = ("site_id", "import_limit_kw", "export_limit_kw")


def _limit(text: str, *, path: Path, row: int, field: str) -> float:
    if not text.strip():
        return math.inf
    # CSV numbers only (float would read "6_0" as 60); nan and inf are told apart below.
    problem = number_problem(text.strip())
    if problem is not None and problem.endswith("is not a number"):
        raise InputError(f"not a number (got {text!r})", file=path, row=row, field=field)
    value = float(text)
    if not math.isfinite(value):
        raise InputError(
            f"must be a finite number; leave the cell blank for no limit (got {text!r})",
            file=path,
            row=row,
            field=field,
        )
    if value < 0:
        raise InputError(f"must be >= 0 (got {text!r})", file=path, row=row, field=field)
    return value


def load_sites_csv(
    path: Path, *, site_ids: tuple[str, ...], other_sites: bool = False
) -> SiteLimits:
    """Limits for ``site_ids`` (the sessions' sites, in their order) from ``path``.

    With ``other_sites`` a listed site that is not in ``site_ids`` is added after them (the
    live aggregator knows sites before their stations connect); without, it is refused.
    """
    try:
        # utf-8-sig: a byte-order mark, as spreadsheets write, is not part of the header.
        text = path.read_text(encoding="utf-8-sig")
    except OSError as error:
        raise InputError(f"cannot read sites file: {error.strerror}", file=path) from None
    except UnicodeDecodeError as error:
        raise InputError(f"not UTF-8 text ({error.reason})", file=path) from None
    imports = dict.fromkeys(site_ids, math.inf)
    exports = dict.fromkeys(site_ids, math.inf)
    with io.StringIO(text, newline="") as handle:
        reader = csv.reader(handle)
        header = [h.strip() for h in next(reader, [])]
        for column in COLUMNS:
            if column not in header:
                raise InputError("missing column", file=path, row=1, field=column)
        for column in header:
            if column not in COLUMNS:
                raise InputError("unknown column", file=path, row=1, field=column)
        position = {c: header.index(c) for c in COLUMNS}
        seen: set[str] = set()
        for row, cells in enumerate(reader, start=2):
            if len(cells) != len(header):
                raise InputError(
                    f"expected {len(header)} cells, got {len(cells)}", file=path, row=row
                )
            site = cells[position["site_id"]].strip()
            if site not in imports and other_sites and site:
                site_ids = (*site_ids, site)
                imports[site] = exports[site] = math.inf
            if site not in imports:
                raise InputError(
                    f"site {site!r} has no sessions", file=path, row=row, field="site_id"
                )
            if site in seen:
                raise InputError(f"duplicate site {site!r}", file=path, row=row, field="site_id")
            seen.add(site)
            for column, table in (("import_limit_kw", imports), ("export_limit_kw", exports)):
                table[site] = _limit(cells[position[column]], path=path, row=row, field=column)
    return SiteLimits(
        site_ids,
        np.array([imports[s] for s in site_ids], dtype=np.float64),
        np.array([exports[s] for s in site_ids], dtype=np.float64),
    )
