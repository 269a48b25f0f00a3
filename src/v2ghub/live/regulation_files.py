"""A schedule of regulation commitments from a CSV file (``serve --regulation-commitments``).

=============  =====  ====================================================
column         unit   meaning
=============  =====  ====================================================
starts_at      time   the commitment's start, ISO 8601 with a UTC offset
ends_at        time   its end (after the start)
capacity_kw    kW     the symmetric capacity the fleet follows the signal with
=============  =====  ====================================================

Each row becomes a commitment in the store with ``source="file:NAME"`` and
``external_id="NAME:ROW"``; a row already there (the server restarted) is not added twice.
Every fault raises :class:`~v2ghub.errors.InputError` naming the file, the row as a
spreadsheet shows it and the column, before anything is stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from v2ghub.errors import InputError
from v2ghub.scenarios.csv_files import CsvRow, check_header, read_rows
from v2ghub.store.regulation import Commitment

COLUMNS = ("starts_at", "ends_at", "capacity_kw")


@dataclass(frozen=True)
class PlannedCommitment:
    """One row of a commitments file."""

    row: int
    starts_at: datetime
    ends_at: datetime
    capacity_kw: float


class CommitmentStore(Protocol):
    def commitments(
        self,
        *,
        overlapping: tuple[datetime, datetime] | None = None,
        commitment_id: int | None = None,
        include_cancelled: bool = True,
    ) -> list[Commitment]: ...

    def add_commitment(
        self,
        *,
        starts_at: datetime,
        ends_at: datetime,
        capacity_kw: float,
        source: str,
        at: datetime,
        external_id: str | None = None,
    ) -> int: ...


def load_commitments_csv(path: Path) -> list[PlannedCommitment]:
    """The commitments of a file (see the module doc)."""
    rows = read_rows(path, content="regulation commitments")
    header = check_header(rows[0], path, columns=COLUMNS, required=COLUMNS)
    out = []
    for index, cells in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in cells):
            continue
        if len(cells) != len(header):
            raise InputError(
                f"{len(cells)} cells where the header has {len(header)}", file=path, row=index
            )
        row = CsvRow(dict(zip(header, (c.strip() for c in cells), strict=True)), path, index)
        starts_at = row.time("starts_at")
        ends_at = row.time("ends_at")
        if ends_at <= starts_at:
            raise row.error(f"{ends_at.isoformat()} is not after starts_at", "ends_at")
        capacity_kw = row.finite("capacity_kw", row.required("capacity_kw"))
        if capacity_kw <= 0:
            raise row.error(f"{capacity_kw:g} kW: a capacity must be > 0", "capacity_kw")
        out.append(PlannedCommitment(index, starts_at, ends_at, capacity_kw))
    if not out:
        raise InputError("no commitments: the file has a header only", file=path)
    return out


def store_commitments(
    store: CommitmentStore, path: Path, planned: list[PlannedCommitment], *, at: datetime
) -> int:
    """Add the file's commitments the store does not hold yet; how many were added."""
    known = {c.external_id for c in store.commitments()}
    added = 0
    for commitment in planned:
        external_id = f"{path.name}:{commitment.row}"[:128]
        if external_id in known:
            continue
        store.add_commitment(
            starts_at=commitment.starts_at,
            ends_at=commitment.ends_at,
            capacity_kw=commitment.capacity_kw,
            source=f"file:{path.name}"[:96],
            at=at,
            external_id=external_id,
        )
        added += 1
    return added
