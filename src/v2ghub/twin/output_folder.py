"""Results folders that are replaced whole or not at all.

A run writes into a fresh folder beside the target and swaps it in at the end, so a failed
or interrupted run leaves no half-written output that could pass for a result, and never
destroys anything but an earlier result. A disk that is full or read-only (or a folder
that cannot be made) is said in one line naming the output folder, never as a traceback.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from v2ghub.errors import InputError
from v2ghub.files import writing_into


def check_output_folder(out: Path, inputs: Sequence[Path | None] = ()) -> None:
    """Refuse an output folder whose replacement would destroy anything but old results."""
    target = out.resolve()
    here = Path.cwd().resolve()
    if target == here or target in here.parents:
        raise InputError(f"--out {out} is the current folder or holds it; name a results folder")
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file; name a folder")
    for given in inputs:
        if given is not None and target in given.resolve().parents:
            raise InputError(f"--out {out} holds the input file {given}; name another folder")
    if out.is_dir() and any(out.iterdir()) and not (out / "summary.json").is_file():
        raise InputError(
            f"--out {out} holds files that are not a v2ghub result (no summary.json); "
            "name a new or empty folder"
        )


def staging_folder(out: Path) -> Path:
    """A new, empty folder beside ``out`` (same file system, so it can be renamed)."""
    with writing_into(out):
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
        staging.chmod(0o755)
    return staging


def swap_in(staging: Path, out: Path) -> None:
    """Put ``staging`` in place of ``out``; the old results go only once the new are in."""
    if not out.exists():
        staging.rename(out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}-old-", dir=out.parent))
    old.rmdir()
    out.rename(old)
    try:
        staging.rename(out)
    except OSError:
        old.rename(out)
        raise
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def replacing(out: Path, inputs: Sequence[Path | None] = ()) -> Iterator[Path]:
    """Check ``out``, yield a staging folder to write into, and swap it in when the block
    ends without an error (the staging folder is removed otherwise)."""
    check_output_folder(out, inputs)
    staging = staging_folder(out)
    try:
        with writing_into(out):
            yield staging
            swap_in(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def link_or_copy(source: Path, target: Path) -> None:
    """``target`` as a hard link to ``source`` where the file system allows, else a copy."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)
