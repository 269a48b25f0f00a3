"""``v2ghub statement``: one line that sums up a party statement."""

from __future__ import annotations

from pathlib import Path

from v2ghub.settlement.money import fen_to_cny
from v2ghub.settlement.statements import Statement

PARTIES_SHOWN = 5
"""Up to this many parties the summary shows each party's net; beyond, each group's."""


def statement_line(result: Statement, csv_path: Path, json_path: Path) -> str:
    """The scope, lines, periods and parties of a statement, each party's (or group's) net,
    and the files written."""
    net: dict[str, int] = {}
    counts: dict[str, int] = {}
    for party, fen in result.net_fen.items():
        shown = party if len(result.net_fen) <= PARTIES_SHOWN else party.split(":")[0]
        net[shown] = net.get(shown, 0) + fen
        counts[shown] = counts.get(shown, 0) + 1
    nets = ", ".join(
        f"{name} {fen_to_cny(fen):+} CNY"
        + (f" ({counts[name]:,} parties)" if counts[name] > 1 else "")
        for name, fen in net.items()
    )
    parties = len(result.net_fen)
    return (
        f"{result.scope}: {len(result):,} lines over {len(result.periods)} periods, "
        f"{parties:,} {'party' if parties == 1 else 'parties'}; "
        f"net {nets}; wrote {csv_path}, {json_path}"
    )
