"""Who gets which share of each revenue stream: contracts between owners, station operators
and the aggregator.

A contracts file (TOML) holds ``[[contract]]`` tables, each matching a site id, a charger
kind (``home``, ``workplace``, ``public``) or every site (``"*"``), with the percentage
each party gets of the streams the grid pays the aggregator::

    [[contract]]
    match = "public"
    discharge = { owner = 70, operator = 20, aggregator = 10 }
    demand_response = { owner = 70, operator = 20, aggregator = 10 }

A session takes the contract of its site if there is one, else of its charger kind, else
``"*"``; a stream a contract leaves out is shared as in :data:`DEFAULT_SHARES` for the
session's charger kind. The defaults ship in ``data/settlement.toml`` (assumed, not from a
source): at home the owner keeps 90% and the aggregator 10%; at workplace and public
stations the owner gets 70%, the station operator 20% and the aggregator 10%.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Annotated

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from v2ghub.errors import InputError
from v2ghub.toml_files import read_toml

SHARED_STREAMS = ("discharge", "demand_response", "regulation_capacity", "regulation_mileage")
PARTIES = ("owner", "operator", "aggregator")
HUNDRED = Decimal(100)

Percent = Annotated[Decimal, Field(ge=0, le=100)]


class Shares(BaseModel):
    """Percentages of one stream; they add up to 100."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    owner: Percent = Decimal(0)
    operator: Percent = Decimal(0)
    aggregator: Percent = Decimal(0)

    @model_validator(mode="after")
    def _whole(self) -> Shares:
        total = self.owner + self.operator + self.aggregator
        if total != HUNDRED:
            raise ValueError(f"shares add up to {total}%, not 100%")
        return self


class Contract(BaseModel):
    """One ``[[contract]]`` table."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    match: str = Field(min_length=1)
    discharge: Shares | None = None
    demand_response: Shares | None = None
    regulation_capacity: Shares | None = None
    regulation_mileage: Shares | None = None


class ContractsFile(BaseModel):
    """The layout of a contracts file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    contract: list[Contract] = []


def _shipped_default_shares() -> dict[str, Shares]:
    """The default shares by charger kind (``data/settlement.toml``, ``[default_shares]``)."""
    text = resources.files("v2ghub.data").joinpath("settlement.toml").read_text("utf-8")
    table = tomllib.loads(text)["default_shares"]
    return {kind: Shares.model_validate(shares) for kind, shares in table.items()}


DEFAULT_SHARES = _shipped_default_shares()


@dataclass(frozen=True)
class Contracts:
    """The contracts in force: looked up per session by site, then charger kind, then ``*``."""

    contracts: tuple[Contract, ...] = ()

    @staticmethod
    def load(path: Path) -> Contracts:
        """Read and check a contracts file; a bad one is refused with file, row and field."""
        data = read_toml(path, what="contracts file")
        try:
            parsed = ContractsFile.model_validate(data)
        except ValidationError as error:
            first = error.errors()[0]
            loc = list(first["loc"])
            row = int(loc[1]) + 1 if len(loc) > 1 and isinstance(loc[1], int) else None
            field = ".".join(str(part) for part in loc[2:]) or None
            message = first["msg"].removeprefix("Value error, ")
            if first["type"] == "extra_forbidden":
                message = f"unknown party or stream {loc[-1]!r} (parties: {', '.join(PARTIES)})"
            raise InputError(message, file=path, row=row, field=field) from None
        matches = [c.match for c in parsed.contract]
        for index, match in enumerate(matches):
            if match in matches[:index]:
                raise InputError(
                    f"a second contract for {match!r}", file=path, row=index + 1, field="match"
                )
        return Contracts(tuple(parsed.contract))

    def shares(
        self,
        stream: str,
        *,
        site_id: npt.NDArray[np.str_],
        charger_kind: npt.NDArray[np.str_],
    ) -> tuple[npt.NDArray[np.int64], list[Shares]]:
        """Per session, the index into the returned list of the shares it takes of ``stream``.

        Vectorised over the sessions: one pass per contract and kind, never per session.
        """
        if stream not in SHARED_STREAMS:
            raise ValueError(f"unknown shared stream {stream!r}")
        table: list[Shares] = []
        n = site_id.shape[0]
        chosen = np.full(n, -1, dtype=np.int64)
        by_match = {c.match: getattr(c, stream) for c in self.contracts}
        # Most specific first: a site's own contract, then its kind's, then "*", then default.
        sites = [m for m in by_match if m not in DEFAULT_SHARES and m != "*"]
        kinds = [k for k in DEFAULT_SHARES if k in by_match]
        candidates = [
            *((m, site_id == m) for m in sites),
            *((k, charger_kind == k) for k in kinds),
            *((m, np.ones(n, dtype=np.bool_)) for m in ("*",) if m in by_match),
        ]
        for match, matched in candidates:
            shares = by_match[match]
            hit = (chosen < 0) & matched
            if shares is not None and hit.any():
                table.append(shares)
                chosen[hit] = len(table) - 1
        for kind, shares in DEFAULT_SHARES.items():
            hit = (chosen < 0) & (charger_kind == kind)
            if hit.any():
                table.append(shares)
                chosen[hit] = len(table) - 1
        if np.any(chosen < 0):
            unknown = sorted(set(charger_kind[chosen < 0].tolist()))
            raise ValueError(f"no contract for charger kind(s) {unknown}")
        return chosen, table
