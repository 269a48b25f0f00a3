"""What a twin run returns: :class:`TwinResult`, which can settle, write and report itself."""

from __future__ import annotations

import json
import shutil
import tempfile
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from v2ghub.errors import InputError
from v2ghub.regulation.envelope import EnvelopeHour
from v2ghub.sim.metrics import CityMetrics, DailyCurves, RunSummary
from v2ghub.twin.codec import decode, encode
from v2ghub.twin.output_folder import link_or_copy, replacing
from v2ghub.twin.settlement import Settlement

RESULT_METADATA_KEY = b"v2ghub.result"
"""Key of the exact run summaries in ``sessions.parquet``'s file metadata."""

REPORT_TITLE = "v2ghub: a day of V2G"
TABLE_FILES = ("sessions.parquet", "meter.parquet")


@dataclass(frozen=True)
class RunInfo:
    """How a run was made (``summary.json``'s ``scenario``)."""

    date: str | None
    step_minutes: int
    control_interval_minutes: int
    seed: int
    vehicles_per_city: int | None
    sessions_file: str | None
    cities: tuple[str, ...]
    planners: tuple[str, ...]
    version: str

    def as_json(self) -> dict[str, Any]:
        """The ``scenario`` object of ``summary.json``."""
        document: dict[str, Any] = encode(self)
        return document


@dataclass(frozen=True)
class _Saved:
    """What ``sessions.parquet`` keeps of a result besides the sessions."""

    info: RunInfo
    notes: tuple[str, ...]
    runs: tuple[RunSummary, ...]


@dataclass(frozen=True, eq=False)
class TwinResult:
    """Every city and planner of a twin run.

    ``runs`` holds one :class:`~v2ghub.sim.metrics.RunSummary` per city and planner (cities
    in order, planners within each): its metrics, daily curves, SoC traces, the hourly
    flexibility envelope and the grid services it gave. Per-session detail is in
    ``folder`` (``sessions.parquet``, ``meter.parquet``; read with :meth:`sessions` and
    :meth:`meter`), so memory holds no per-vehicle data however large the fleets.
    Results compare equal when their runs, settings and session tables are equal.
    """

    runs: tuple[RunSummary, ...]
    info: RunInfo
    notes: tuple[str, ...]
    folder: Path
    _owned: bool = field(default=False, repr=False)

    def __post_init__(self) -> None:
        if self._owned:  # a temporary work folder: removed with the result
            weakref.finalize(self, shutil.rmtree, self.folder, True)

    @property
    def planners(self) -> tuple[str, ...]:
        """Planner names, the reference for peak reduction first."""
        return self.info.planners

    @property
    def cities(self) -> tuple[str, ...]:
        """City names, in the order they ran."""
        return tuple(dict.fromkeys(run.city for run in self.runs))

    def run(self, city: str, planner: str) -> RunSummary:
        """The run of ``planner`` in ``city``."""
        for run in self.runs:
            if (run.city, run.planner) == (city, planner):
                return run
        raise KeyError(f"no run for {city} / {planner} (cities {self.cities}, {self.planners})")

    def metrics(self, city: str, planner: str) -> CityMetrics:
        """The summary figures of ``planner`` in ``city`` (``summary.json``'s entries)."""
        return self.run(city, planner).metrics

    def curves(self, city: str, planner: str) -> DailyCurves:
        """The daily curves (kW per step) of ``planner`` in ``city``."""
        return self.run(city, planner).curves

    def envelope(self, city: str, planner: str) -> tuple[EnvelopeHour, ...]:
        """The flexibility envelope of ``planner`` in ``city`` at the top of each hour: how
        far the fleet's power could go up or down (kW) and hold for 15 min, 1 h and 4 h."""
        return self.run(city, planner).envelope

    def summary_table(self) -> pa.Table:
        """One row per city and planner, every metric (``summary.csv`` as a table)."""
        rows = [encode(run.metrics) for run in self.runs]
        return pa.Table.from_pylist(rows)

    def sessions(self) -> pa.Table:
        """Every session of every run: energy asked, delivered, discharged, bill."""
        return pq.read_table(self.folder / "sessions.parquet")

    def meter(self) -> pa.Table:
        """Every session's metered energy per price period (integer Wh)."""
        return pq.read_table(self.folder / "meter.parquet")

    def summary_document(self) -> dict[str, Any]:
        """What ``summary.json`` holds."""
        from v2ghub.report.outputs import summary_document  # noqa: PLC0415 - report layer

        return summary_document(self.runs, planners=self.planners, scenario=self.info.as_json())

    def write(self, folder: Path | str, *, inputs: Sequence[Path | None] = ()) -> Path:
        """Write every result file into ``folder``, replacing an earlier result there whole
        (or not at all, when anything fails): ``summary.json``, ``summary.csv``,
        ``curves.csv``, ``envelope.csv``, ``sessions.parquet``, ``meter.parquet``,
        ``settlement.json``, ``report.html`` and, when the run had them, ``market.json``
        and ``regulation.json``. A folder that holds anything but a v2ghub result, or one
        of ``inputs``, is refused."""
        out = Path(folder)
        with replacing(out, inputs) as staging:
            self._write_into(staging)
        return out

    def _write_into(self, staging: Path) -> None:
        for name in TABLE_FILES:
            if (self.folder / name).resolve() != (staging / name).resolve():
                link_or_copy(self.folder / name, staging / name)
        self._write_summaries(staging)
        # Settle what the run metered (totals only: `v2ghub settle` writes statements) on a
        # thread of its own while the report's figures are drawn: settling is NumPy and
        # Arrow work that leaves the interpreter to the drawing most of the time (a million
        # vehicles: about 1.5 s of each). The report waits for it after the figures.
        from v2ghub.settlement.settle import settle_run  # noqa: PLC0415 - settlement layer

        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="settle") as pool:
            settling = pool.submit(settle_run, staging, out=staging, statements=False)
            try:
                self._write_report(staging / "report.html", settling.result)
            finally:
                settling.cancel()

    def _write_summaries(self, folder: Path) -> None:
        from v2ghub.report import outputs  # noqa: PLC0415 - report layer

        outputs.write_summary_json(folder / "summary.json", self.summary_document())
        outputs.write_summary_csv(folder / "summary.csv", self.runs)
        outputs.write_curves_csv(folder / "curves.csv", self.runs)
        outputs.write_envelope_csv(folder / "envelope.csv", self.runs)
        outputs.write_market_json(folder / "market.json", self.runs)
        outputs.write_regulation_json(folder / "regulation.json", self.runs)

    def _write_report(
        self, path: Path, settlement: dict[str, Any] | Callable[[], dict[str, Any]]
    ) -> None:
        from v2ghub.report.html import write_html_report  # noqa: PLC0415 - report layer

        write_html_report(
            path, list(self.runs), title=REPORT_TITLE, notes=list(self.notes), settlement=settlement
        )

    def settle(
        self,
        *,
        contracts: Path | str | None = None,
        rates: Path | str | None = None,
        ledger: Path | str | None = None,
        planners: Sequence[str] | None = None,
        out: Path | str | None = None,
    ) -> Settlement:
        """Settle every city and planner's day, exactly, to the fen.

        ``contracts`` and ``rates`` are TOML files (defaults: the shipped contracts and
        rate cards); ``ledger`` a SQLite ledger to post into (posting the same run again
        changes nothing). With ``out``, ``statements.csv``, ``settlement.json`` and the
        ledger are written there; without, only the totals are kept.
        """
        from v2ghub.settlement.contracts import Contracts  # noqa: PLC0415 - settlement layer
        from v2ghub.settlement.settle import settle_run  # noqa: PLC0415

        terms = Contracts.load(Path(contracts)) if contracts is not None else Contracts()
        with tempfile.TemporaryDirectory(prefix="v2ghub-settle-") as scratch:
            run_folder = Path(scratch) / "run"
            run_folder.mkdir()
            for name in TABLE_FILES:
                link_or_copy(self.folder / name, run_folder / name)
            self._write_summaries(run_folder)
            target = Path(out) if out is not None else Path(scratch) / "settled"
            document = settle_run(
                run_folder,
                out=target,
                planners=list(planners) if planners is not None else None,
                contracts=terms,
                rates_file=Path(rates) if rates is not None else None,
                ledger_path=Path(ledger) if ledger is not None else None,
                statements=out is not None or ledger is not None,
            )
        return Settlement.of(document, folder=Path(out) if out is not None else None)

    def report(self, path: Path | str) -> Path:
        """Write the HTML report (plots, tables, who is paid what) to ``path``."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        self._write_report(target, self.settle().document)
        return target

    @classmethod
    def read(cls, folder: Path | str) -> TwinResult:
        """The result written to ``folder`` (by :meth:`write` or ``v2ghub simulate``)."""
        path = Path(folder) / "sessions.parquet"
        if not path.is_file():
            raise InputError("not found: not the output folder of a v2ghub run", file=path)
        try:
            metadata = pq.read_metadata(path).metadata or {}
            if RESULT_METADATA_KEY not in metadata:
                raise InputError(
                    "holds no run summaries to read back (written by a v2ghub without the "
                    "Python API? run it again)",
                    file=path,
                )
            saved = decode(_Saved, json.loads(metadata[RESULT_METADATA_KEY]), where="result")
        except (ValueError, TypeError, KeyError) as error:  # a damaged or foreign file
            if isinstance(error, InputError):
                raise
            problem = " ".join(str(error).split())
            raise InputError(f"unreadable run summaries ({problem})", file=path) from None
        return cls(runs=saved.runs, info=saved.info, notes=saved.notes, folder=Path(folder))

    def saved_metadata(self) -> dict[bytes, bytes]:
        """The file metadata that lets :meth:`read` rebuild this result from its folder."""
        saved = _Saved(info=self.info, notes=self.notes, runs=self.runs)
        return {RESULT_METADATA_KEY: json.dumps(encode(saved)).encode("utf-8")}

    def __hash__(self) -> int:
        raise TypeError("a TwinResult is not hashable: it compares by value")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TwinResult):
            return NotImplemented
        return json.dumps(encode(_Saved(self.info, self.notes, self.runs))) == json.dumps(
            encode(_Saved(other.info, other.notes, other.runs))
        ) and all(
            pq.read_table(self.folder / name).equals(pq.read_table(other.folder / name))
            for name in TABLE_FILES
        )
