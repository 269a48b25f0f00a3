"""Reading users' TOML files (scenarios, contracts, rates): one way to fail clearly; and the
shipped ones (``v2ghub/data``)."""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from v2ghub.errors import InputError


def read_toml(path: Path, *, what: str) -> dict[str, Any]:
    """The parsed content of ``path``; an unreadable or invalid file is an :class:`InputError`
    naming it (``what`` says which kind of file, e.g. ``"scenario file"``)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"cannot read {what}: {error}", file=path) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise InputError(f"not valid TOML: {error}", file=path) from None


def read_shipped_toml(name: str) -> dict[str, Any]:
    """The parsed content of the shipped data file ``v2ghub/data/<name>``."""
    text = resources.files("v2ghub.data").joinpath(name).read_text(encoding="utf-8")
    return tomllib.loads(text)
