"""A committed regulation hour live with 100 simulated OCPP 2.1 chargers, scored from their
meter values and paid by ``settle --live``.

The same run as ``tests/test_live_regulation_hour.py`` (the real server and control loop
in this process, the chargers beside them, a dynamic 4-s signal file replayed by the
server, SQLite on disk), with more chargers on a slower clock: 100 chargers, 200 kW
committed from 10:00 to 11:00 in Shenzhen, 10 times faster than real time by default.

Printed: the hour's score (correlation, delay, precision, composite; the issue's goal is a
composite of at least 0.9), the EVSEs that followed and the share of their samples with a
fresh reading, the broadcasts and the stations' answers, what ``settle --live`` paid
(capacity and mileage, CNY) and whether the ledger balanced; whole-process wall time and
peak memory.

Run: ``python benchmarks/bench_regulation_hour.py [--chargers 100] [--speed 10]``.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the run is the end-to-end test's, at a larger size

from tests.test_live_regulation_hour import COMMITTED, run_period  # noqa: E402

from v2ghub.regulation.live_score import live_regulation_hours  # noqa: E402
from v2ghub.store.repository import Store  # noqa: E402
from v2ghub.workflows.settle import settle_live_day  # noqa: E402

GOAL_COMPOSITE = 0.9


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chargers", type=int, default=100)
    parser.add_argument("--speed", type=float, default=10.0)
    parser.add_argument("--capacity-kw", type=float, default=None, help="default 2 kW a charger")
    args = parser.parse_args()
    capacity_kw = args.capacity_kw or 2.0 * args.chargers
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'v2ghub.sqlite3'}"
        with Store.open(database_url=url) as store:
            services = asyncio.run(
                run_period(
                    store,
                    chargers=args.chargers,
                    speed=args.speed,
                    capacity_kw=capacity_kw,
                    # The chargers share this process with the server: they skip checking
                    # its messages against the schemas (real ones have their own processor).
                    validate_messages=False,
                )
            )
            run_s = time.perf_counter() - started
            hours = live_regulation_hours(
                store, COMMITTED[0], COMMITTED[1], timezone="Asia/Shanghai"
            )
        document = settle_live_day(
            day=COMMITTED[0].date(), city="shenzhen", out=Path(folder) / "out", database_url=url
        )
    wall_s = time.perf_counter() - started
    broadcaster = services.broadcaster
    assert broadcaster is not None
    print(
        f"{args.chargers} chargers, {capacity_kw:g} kW committed 10:00-11:00, clock x{args.speed:g}"
    )
    print(f"broadcasts {broadcaster.broadcasts}, answers {dict(broadcaster.answers)}")
    for hour in hours:
        verdict = "met" if hour.composite >= GOAL_COMPOSITE else "NOT met"
        print(
            f"hour {hour.start:%H:%M}: correlation {hour.correlation:.4f}, delay {hour.delay:.4f} "
            f"({hour.delay_s:g} s), precision {hour.precision:.4f}, composite {hour.composite:.4f} "
            f"(goal >= {GOAL_COMPOSITE}: {verdict})"
        )
        print(
            f"  EVSEs following {hour.evse_count}, fresh readings {hour.reporting_share:.1%}, "
            f"energy told {hour.expected_energy_kwh:.2f} kWh, "
            f"measured {hour.measured_energy_kwh:.2f}"
        )
    for paid in document["services"]["regulation"]:
        print(
            f"settle --live: capacity {paid['capacity_cny']} CNY, mileage {paid['mileage_cny']} "
            f"CNY at composite {paid['composite']}; ledger balanced: {document['balanced']}"
        )
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"whole process {wall_s:.0f} s wall (the run {run_s:.0f} s), peak memory {peak_mb:.0f} MB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
