"""The roles of the web API's bearer tokens (:mod:`v2ghub.store.api_tokens`).

Apart from the token store, so that ``v2ghub token``'s parser offers them without loading
SQLAlchemy.
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    """What a token may see and do; each role is told in :mod:`v2ghub.store.api_tokens`."""

    ADMIN = "admin"
    OPERATOR = "operator"
    GRID = "grid"
    OWNER = "owner"
