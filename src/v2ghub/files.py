"""Writing files so that a reader never sees half of one: one helper every layer may use.

It sits below every layer (it imports only :mod:`v2ghub.errors`), so that settlement and
the report both write through it without importing each other.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from v2ghub.errors import InputError


@contextlib.contextmanager
def atomic_text(path: Path) -> Iterator[TextIO]:
    """A text handle whose content replaces ``path`` only when the block succeeds.

    Writes to a hidden temporary file in the same folder and renames it over ``path`` at
    the end (:func:`os.replace`, atomic on one file system); on any error the temporary
    file is removed and ``path`` is left as it was.

    Raises
    ------
    InputError
        The file cannot be created or written (naming the file and the reason).
    """
    try:
        fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as error:
        raise InputError(f"cannot write the file ({error.strerror})", file=path) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            yield handle
        os.chmod(temporary, 0o644)  # mkstemp makes it private; outputs are ordinary files
        os.replace(temporary, path)
    except OSError as error:
        Path(temporary).unlink(missing_ok=True)
        raise InputError(f"cannot write the file ({error.strerror})", file=path) from None
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
