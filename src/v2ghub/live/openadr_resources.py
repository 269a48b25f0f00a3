"""Which of our sites each OpenADR resource is: the VEN's resources file.

A CSV with header ``resource_id,site_id`` and, optionally, ``level_1_kw``, ``level_2_kw``,
``level_3_kw``: the site's import cap, kW, at each level of a ``SIMPLE`` event (level 0 is
no cap; a blank cell is no cap at that level). A VTN event names resources; a site no
resource maps to is never dispatched. Bad rows are refused with one line naming the file,
row and field (:class:`~v2ghub.errors.InputError`).
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path

from v2ghub.errors import InputError

REQUIRED = ("resource_id", "site_id")
LEVELS = ("level_1_kw", "level_2_kw", "level_3_kw")
ID_LENGTH = 64


@dataclass(frozen=True)
class Resource:
    """One VTN resource: our site, and its import cap per SIMPLE level 1-3 (kW, ``None``:
    no cap at that level)."""

    resource_id: str
    site_id: str
    level_caps_kw: tuple[float | None, float | None, float | None] = (None, None, None)


@dataclass(frozen=True)
class Resources:
    """The resources file: resources by id, in file order."""

    by_id: dict[str, Resource]

    @property
    def site_ids(self) -> tuple[str, ...]:
        """Our sites, each once, in file order."""
        return tuple(dict.fromkeys(r.site_id for r in self.by_id.values()))

    def resources_of(self, site_id: str) -> list[Resource]:
        return [r for r in self.by_id.values() if r.site_id == site_id]


def _cap(text: str, *, path: Path, row: int, field: str) -> float | None:
    if not text.strip():
        return None
    try:
        value = float(text)
    except ValueError:
        raise InputError(f"not a number (got {text!r})", file=path, row=row, field=field) from None
    if not (math.isfinite(value) and value >= 0):
        raise InputError(
            f"must be a finite number >= 0 kW; leave it blank for no cap (got {text!r})",
            file=path,
            row=row,
            field=field,
        )
    return value


def _identifier(text: str, *, path: Path, row: int, field: str) -> str:
    value = text.strip()
    if not value or len(value) > ID_LENGTH or "," in value:
        raise InputError(
            f"must be 1-{ID_LENGTH} characters without a comma (got {text!r})",
            file=path,
            row=row,
            field=field,
        )
    return value


def load_resources(path: Path) -> Resources:
    """The resources file at ``path``; ``InputError`` for a missing column, an unknown
    column, a blank or repeated resource id, or a cap that is not a number >= 0."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as error:
        raise InputError(f"cannot read resources file: {error.strerror}", file=path) from None
    except UnicodeDecodeError as error:
        raise InputError(f"not UTF-8 text ({error.reason})", file=path) from None
    with io.StringIO(text, newline="") as handle:
        rows = list(csv.reader(handle))
    header = [h.strip() for h in rows[0]] if rows else []
    for name in REQUIRED:
        if name not in header:
            raise InputError(
                f"missing column (header: {','.join(header)!r})", file=path, field=name
            )
    for name in header:
        if name not in REQUIRED + LEVELS:
            known = ", ".join(REQUIRED + LEVELS)
            raise InputError(f"unknown column (known: {known})", file=path, row=1, field=name)
    by_id: dict[str, Resource] = {}
    for number, cells in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in cells):
            continue
        if len(cells) != len(header):
            raise InputError(
                f"{len(cells)} cells, the header has {len(header)}", file=path, row=number
            )
        values = dict(zip(header, cells, strict=True))
        resource_id = _identifier(values["resource_id"], path=path, row=number, field="resource_id")
        if resource_id in by_id:
            raise InputError(
                f"resource {resource_id!r} is listed twice",
                file=path,
                row=number,
                field="resource_id",
            )
        site_id = _identifier(values["site_id"], path=path, row=number, field="site_id")
        caps = tuple(
            _cap(values.get(level, ""), path=path, row=number, field=level) for level in LEVELS
        )
        by_id[resource_id] = Resource(resource_id, site_id, (caps[0], caps[1], caps[2]))
    if not by_id:
        raise InputError("no resources listed", file=path)
    return Resources(by_id)
