"""Writing the files a user names, safely: one helper every layer may use.

Three rules hold for every output file written through this module:

- **Whole or not at all.** The content goes to a hidden temporary file in the same folder,
  is flushed to the disk (:func:`os.fsync`) and only then renamed over the target
  (:func:`os.replace`, atomic on one file system), and the folder is synced so that the
  rename itself survives a crash. On any error the temporary file is removed and the
  target is left as it was.
- **Regular files only.** A device, a FIFO, a socket or a folder at the target is never
  replaced, whatever the options: replacing ``/dev/sda`` or a pipe with a regular file
  breaks what reads it. A symbolic link is refused unless ``force``; then the link itself
  is replaced, never the file it points to (so a link to ``/etc/passwd`` cannot make a
  schedule overwrite the password file).
- **Only our own files.** A regular file that exists is replaced only when it is empty or
  reads as the kind of file being written (:class:`Replaces`: a test of its first bytes,
  such as a CSV header), unless ``force``.

The target is checked twice: by :func:`check_replaceable` before any long work (so a
refusal costs nothing) and again just before the rename (so a file that appeared in the
meantime is not lost). The rename follows the second check at once; what the file system
does between them is beyond a user program's reach.

It sits below every layer (it imports only :mod:`v2ghub.errors`), so that settlement and
the report both write through it without importing each other.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
import tempfile
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO, TextIO, cast

from v2ghub.errors import InputError

HEAD_BYTES = 65_536
"""How much of an existing file is read to recognise it (64 KiB: a header or a summary)."""
OUTPUT_FILE_MODE = 0o644
"""Mode of written files: ``mkstemp`` makes them private; outputs are ordinary files."""

Recognise = Callable[[bytes], bool]
"""Whether a file's first :data:`HEAD_BYTES` bytes are of the kind being written."""


@dataclass(frozen=True)
class Replaces:
    """What an output file may replace.

    Attributes
    ----------
    what
        The kind of file written, for messages: ``"v2ghub schedule"``.
    is_ours
        Whether an existing file's first bytes are of that kind.
    force
        Replace a regular file (or a symbolic link) whatever it holds.
    option
        The option that names the file (``"--out"``), for messages, which then tell of
        ``--force``; ``""`` for a file the program names (no option to force it).
    """

    what: str
    is_ours: Recognise
    force: bool = False
    option: str = ""


ANY_REGULAR_FILE = Replaces(what="file", is_ours=lambda head: True)
"""For files whose name the program chose inside a folder made for them: any regular file
there may be replaced, but never a device, a folder or a symbolic link."""


def starts_with_line(*lines: str) -> Recognise:
    """Recognise a text file whose first line is one of ``lines`` (a CSV header).

    A UTF-8 byte-order mark (as spreadsheets write) and a ``\\r\\n`` line end are allowed.
    """
    wanted = {line.encode() for line in lines}

    def is_ours(head: bytes) -> bool:
        first = head.removeprefix(b"\xef\xbb\xbf").split(b"\n", 1)[0].rstrip(b"\r")
        return first in wanted

    return is_ours


def json_object_with(keys: Collection[str]) -> Recognise:
    """Recognise a JSON file holding one object with all of ``keys``.

    A file longer than :data:`HEAD_BYTES` is cut short, does not parse and is not ours.
    """

    def is_ours(head: bytes) -> bool:
        try:
            document = json.loads(head)
        except ValueError:  # includes bytes that are not UTF-8
            return False
        return isinstance(document, dict) and all(key in document for key in keys)

    return is_ours


_ERRNO_IN_TEXT = re.compile(r"\[errno (\d+)\]")
"""How Arrow names the system's error in an OSError of its own (no ``errno`` attribute)."""


def _reason(error: OSError) -> str:
    """The system's words for ``error`` ("No space left on device"), else its text."""
    if error.strerror:
        return error.strerror
    found = _ERRNO_IN_TEXT.search(str(error))
    return os.strerror(int(found[1])) if found else str(error)


def _refusal(path: Path, rule: Replaces, problem: str) -> InputError:
    option = f"{rule.option} " if rule.option else ""
    return InputError(f"{option}{problem}", file=path)


def check_replaceable(path: Path, rule: Replaces) -> None:
    """Refuse ``path`` as an output unless writing there replaces nothing but ``rule``
    allows (rules in the module docstring).

    Raises
    ------
    InputError
        Naming the file and why it is not replaced.
    """
    try:
        found = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as error:
        raise InputError(f"cannot look at the file ({_reason(error)})", file=path) from None
    mode = found.st_mode
    if stat.S_ISLNK(mode):
        if rule.force:
            return
        hint = " (with --force it replaces the link itself, never what it points to)"
        raise _refusal(
            path,
            rule,
            "is a symbolic link; v2ghub writes only regular files" + (hint if rule.option else ""),
        )
    if stat.S_ISDIR(mode):
        raise _refusal(path, rule, "is a folder; give the name of the file to write")
    if not stat.S_ISREG(mode):
        kind = "device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "special file"
        raise _refusal(
            path, rule, f"is a {kind}, not a regular file; v2ghub writes only regular files"
        )
    if rule.force or found.st_size == 0:
        return
    try:
        with path.open("rb") as handle:
            head = handle.read(HEAD_BYTES)
    except OSError as error:
        raise InputError(f"cannot read the file ({_reason(error)})", file=path) from None
    if not rule.is_ours(head):
        raise _refusal(
            path,
            rule,
            f"exists and is not a {rule.what}; not replaced (remove it, name another "
            "file, or give --force to replace it)",
        )


def _sync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (where the system can open a folder at all)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass  # some file systems cannot sync a folder; the rename is still atomic
    finally:
        os.close(descriptor)


@contextlib.contextmanager
def _staged(targets: Sequence[tuple[Path, Replaces]], *, text: bool) -> Iterator[list[IO[Any]]]:
    """Open a temporary file beside each target; on success check every target and only
    then rename each temporary file over its target."""
    for path, rule in targets:
        check_replaceable(path, rule)
    named = ", ".join(str(path) for path, _ in targets)
    temporaries: list[Path] = []
    try:
        with contextlib.ExitStack() as opened:
            handles: list[IO[Any]] = []
            for path, _ in targets:
                try:
                    fd, name = tempfile.mkstemp(
                        prefix=f".{path.name}.", suffix=".tmp", dir=path.parent
                    )
                except OSError as error:
                    raise InputError(
                        f"cannot write the file ({_reason(error)})", file=path
                    ) from None
                temporaries.append(Path(name))
                opening: IO[Any] = (
                    os.fdopen(fd, "w", encoding="utf-8", newline="")
                    if text
                    else os.fdopen(fd, "wb")
                )
                handles.append(opened.enter_context(opening))
            yield handles
            for written in handles:
                written.flush()
                os.fsync(written.fileno())
        for path, rule in targets:
            check_replaceable(path, rule)  # again: something may have appeared meanwhile
        for path, temporary in zip((path for path, _ in targets), temporaries, strict=True):
            os.chmod(temporary, OUTPUT_FILE_MODE)
            os.replace(temporary, path)
            _sync_folder(path.parent)
    except OSError as error:
        # A full or read-only disk while writing, syncing or renaming: name the file(s).
        raise InputError(f"cannot write the file ({_reason(error)})", file=named) from None
    finally:
        for temporary in temporaries:
            temporary.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_texts(targets: Sequence[tuple[Path, Replaces]]) -> Iterator[list[TextIO]]:
    """Text handles (UTF-8, no newline translation) whose contents replace their targets
    only when the block succeeds and every target passes its check; see the module
    docstring. An error writing any of them leaves every target as it was (the renames
    come after all the writing).

    Raises
    ------
    InputError
        A target may not be replaced, or cannot be created or written (naming the file
        and the reason).
    """
    with _staged(targets, text=True) as handles:
        yield cast(list[TextIO], handles)


@contextlib.contextmanager
def atomic_text(path: Path, rule: Replaces = ANY_REGULAR_FILE) -> Iterator[TextIO]:
    """A text handle whose content replaces ``path`` only when the block succeeds (see
    :func:`atomic_texts`)."""
    with atomic_texts([(path, rule)]) as (handle,):
        yield handle


@contextlib.contextmanager
def atomic_binary(path: Path, rule: Replaces = ANY_REGULAR_FILE) -> Iterator[BinaryIO]:
    """A binary handle whose content replaces ``path`` only when the block succeeds (see
    :func:`atomic_texts`)."""
    with _staged([(path, rule)], text=False) as (handle,):
        yield cast(BinaryIO, handle)


def write_text_atomic(path: Path, text: str, rule: Replaces = ANY_REGULAR_FILE) -> None:
    """Write ``text`` to ``path`` whole or not at all (see :func:`atomic_texts`)."""
    with atomic_text(path, rule) as handle:
        handle.write(text)


@contextlib.contextmanager
def writing_into(path: Path) -> Iterator[None]:
    """Turn an :class:`OSError` of the block (a full or read-only disk: errno 28, 30) into
    one line naming ``path``, the file or folder being written.

    For blocks that write many files through libraries (Parquet, SQLite) whose errors do
    not name the file the user gave.
    """
    try:
        yield
    except OSError as error:
        raise InputError(f"cannot write here ({_reason(error)})", file=path) from None
