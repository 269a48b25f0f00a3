"""Errors about a user's input, worded so that one line names the file, row and field."""

from __future__ import annotations

from pathlib import Path


class InputError(ValueError):
    """Bad input from a file or the command line.

    The message is one line: ``FILE: row ROW, field FIELD: PROBLEM``. Rows count lines of
    the file as a spreadsheet shows them (the header is row 1).
    """

    def __init__(
        self,
        problem: str,
        *,
        file: Path | str | None = None,
        row: int | None = None,
        field: str | None = None,
    ) -> None:
        self.problem = problem
        self.file = str(file) if file is not None else None
        self.row = row
        self.field = field
        where = []
        if row is not None:
            where.append(f"row {row}")
        if field is not None:
            where.append(f"field {field}")
        prefix = f"{self.file}: " if self.file else ""
        location = ", ".join(where)
        message = f"{prefix}{location}: {problem}" if location else f"{prefix}{problem}"
        super().__init__(" ".join(message.split()))


class PlanningError(RuntimeError):
    """The optimiser could not produce a plan (infeasible, time limit, solver error), or a
    plan broke a guarantee (:func:`v2ghub.planning.check.plan_checked`)."""
