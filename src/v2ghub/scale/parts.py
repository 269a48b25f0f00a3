"""Per-session detail of sharded runs: one Parquet part per shard, joined in order.

A worker writes its shard's ``sessions`` and ``meter`` tables as
``parts/<table>-c<city>-p<planner>-b<block>.parquet`` in the run's folder (under a
temporary name first, so a worker killed while writing leaves no part that looks whole).
The driver streams the parts, one at a time and in (city, planner, block) order, into
``sessions.parquet`` and ``meter.parquet`` as the runs complete (while workers go on):
the same files, rows and order as an unsharded run writes, with memory for one part at a
time.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import pyarrow.parquet as pq

from v2ghub.sim.metrics import RunResult

PARTS_FOLDER = "parts"
TABLES = ("sessions", "meter")


def part_path(folder: Path, table: str, *, city: int, planner: int, block: int) -> Path:
    """Where the part of ``table`` for a city, planner and block (their numbers) goes."""
    return folder / PARTS_FOLDER / f"{table}-c{city:03d}-p{planner:02d}-b{block:05d}.parquet"


def write_parts(result: RunResult, folder: Path, *, city: int, planner: int, block: int) -> None:
    """Write a shard run's ``sessions`` and ``meter`` parts (each whole or not at all)."""
    from v2ghub.report.outputs import meter_table, sessions_table  # noqa: PLC0415 - heavy

    for table, table_of in (("sessions", sessions_table), ("meter", meter_table)):
        target = part_path(folder, table, city=city, planner=planner, block=block)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
        pq.write_table(table_of(result), partial)
        os.replace(partial, target)


class PartJoiner:
    """Appends parts to ``sessions.parquet`` and ``meter.parquet`` as runs complete, in
    order, each part read whole (one shard's rows) and removed once written; the caller
    closes it with the footer's metadata when every run is in."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._writers: dict[str, pq.ParquetWriter] = {}

    def append(self, keys: Sequence[tuple[int, int, int]]) -> None:
        """Append the parts of ``keys`` ((city, planner, block) numbers), in that order."""
        for table in TABLES:
            for city, planner, block in keys:
                path = part_path(self.folder, table, city=city, planner=planner, block=block)
                part = pq.read_table(path)
                writer = self._writers.get(table)
                if writer is None:
                    writer = pq.ParquetWriter(self.folder / f"{table}.parquet", part.schema)
                    self._writers[table] = writer
                writer.write_table(part)
                del part
                path.unlink()

    def close(self, metadata: dict[bytes, bytes] | None = None) -> None:
        """Finish the files (``metadata`` into ``sessions.parquet``'s footer)."""
        writer = self._writers.get("sessions")
        if writer is not None and metadata is not None:
            writer.add_key_value_metadata(metadata)
        self.abort()

    def abort(self) -> None:
        """Close the files as they are and remove what parts are left."""
        writers, self._writers = self._writers, {}
        for writer in writers.values():
            writer.close()
        shutil.rmtree(self.folder / PARTS_FOLDER, ignore_errors=True)


def join_parts(
    folder: Path,
    keys: Sequence[tuple[int, int, int]],
    *,
    metadata: dict[bytes, bytes] | None = None,
) -> None:
    """Stream the parts of ``keys`` ((city, planner, block) numbers, in that order) into
    ``folder/sessions.parquet`` and ``folder/meter.parquet``, then remove the parts.
    ``metadata`` goes into ``sessions.parquet``'s footer."""
    joiner = PartJoiner(folder)
    try:
        joiner.append(keys)
    except BaseException:
        joiner.abort()
        raise
    joiner.close(metadata)
