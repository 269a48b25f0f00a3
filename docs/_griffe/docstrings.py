"""A griffe extension for the documentation build only: it reads v2ghub's docstrings as
they are written (NumPy style with a few Sphinx habits) and hands mkdocstrings what it
understands, without touching the source.

- Sphinx roles (:class:`Scenario`, :func:`~v2ghub.planning.check.plan_safely`) become
  cross-references (links when the target is documented, plain code otherwise).
- A doctest (``>>>``) that is not under an ``Examples`` heading gets one, so it renders
  as code and is not read as a parameter.
- A paragraph after the last item of a ``Parameters`` (or ``Attributes``) section gets a
  ``Notes`` heading, so it is not read as a parameter either.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(
    r":(?:py:)?(?:class|func|meth|mod|data|attr|exc|obj|const|type):`(?P<tilde>~?)(?P<target>[\w.]+)`"
)
_ITEM_SECTIONS = {"parameters", "other parameters", "attributes"}
_ITEM_HEADER = re.compile(r"^\*{0,2}[A-Za-z_]\w*(\s*,\s*\*{0,2}[A-Za-z_]\w*)*\s*(:.*)?$")


def _heading(lines: list[str], index: int) -> str | None:
    """The NumPy section title at ``lines[index]`` (title line, dashes line), or None."""
    if index + 1 >= len(lines):
        return None
    title, underline = lines[index], lines[index + 1]
    if title and not title[0].isspace() and re.fullmatch(r"-{3,}\s*", underline):
        return title.strip().lower()
    return None


def _sections(text: str) -> str:
    """Add ``Examples`` and ``Notes`` headings where NumPy style expects them."""
    lines = text.split("\n")
    out: list[str] = []
    section: str | None = None
    index = 0
    while index < len(lines):
        line = lines[index]
        title = _heading(lines, index)
        if title is not None:
            section = title
            out.extend(lines[index : index + 2])
            index += 2
            continue
        after_blank = not out or not out[-1].strip()
        if after_blank and line.startswith(">>>") and section != "examples":
            out.extend(["Examples", "--------"])
            section = "examples"
        elif (
            after_blank
            and section in _ITEM_SECTIONS
            and line
            and not line[0].isspace()
            and not _ITEM_HEADER.match(line)
        ):
            out.extend(["Notes", "-----"])
            section = "notes"
        out.append(line)
        index += 1
    return "\n".join(out)


def _target(obj: griffe.Object, name: str) -> str | None:
    """The full path that ``name`` means in ``obj``'s scope, if griffe can tell."""
    if name.startswith("v2ghub."):
        return name
    head, _, rest = name.partition(".")
    for scope in (obj, obj.parent):
        if scope is None:
            continue
        try:
            resolved = scope.resolve(head)
        except Exception:  # an unknown name stays plain code
            continue
        return f"{resolved}.{rest}" if rest else resolved
    return None


def _roles(obj: griffe.Object, text: str) -> str:
    """Sphinx roles as optional autorefs (no warning when the target is not documented)."""

    def replace(match: re.Match[str]) -> str:
        name = match["target"]
        shown = name.rsplit(".", 1)[-1] if match["tilde"] else name
        target = _target(obj, name)
        if target is None:
            return f"`{shown}`"
        return f'<autoref identifier="{target}" optional><code>{shown}</code></autoref>'

    return _ROLE.sub(replace, text)


class V2ghubDocstrings(griffe.Extension):
    """Normalise every docstring of the loaded package before mkdocstrings parses it."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        docstring = obj.docstring
        if docstring is None or obj.is_alias:
            return
        docstring.value = _roles(obj, _sections(docstring.value))

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        # on_object is not called for the top package itself.
        if pkg.docstring is not None:
            pkg.docstring.value = _roles(pkg, _sections(pkg.docstring.value))
