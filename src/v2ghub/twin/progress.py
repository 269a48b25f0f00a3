"""Progress of a long run: a bar in the terminal, or a callable of the caller's."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as ProgressBar

OnStep = Callable[[str, float], None]
"""Told ``(label, share)``: the run ``label`` (``"City / planner"``) is ``share`` (0-1) done."""

Progress = bool | OnStep
"""``True`` for a progress bar, ``False`` for none, or a callable told each step."""


@contextlib.contextmanager
def progress_callback(
    progress: Progress, total_runs: int, *, console: Console | None = None
) -> Iterator[OnStep | None]:
    """The step callback for ``progress``: a rich bar over ``total_runs`` runs (on
    ``console``, default standard error; gone when done), the caller's own, or none."""
    if callable(progress):
        yield progress
        return
    if not progress:
        yield None
        return
    bar = ProgressBar(
        TextColumn("{task.description:<28}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        console=console if console is not None else Console(stderr=True),
        transient=True,
    )
    # The latest share of each run: runs may progress one after the other or, sharded
    # across workers, at the same time; the bar shows their sum.
    shares: dict[str, float] = {}
    with bar:
        task = bar.add_task("simulating", total=total_runs)

        def on_step(label: str, share: float) -> None:
            shares[label] = share
            bar.update(task, completed=sum(shares.values()), description=label)

        yield on_step
