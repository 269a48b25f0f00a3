"""A mixed fleet's evening at 60 times real speed: OCPP 2.1, 2.0.1 and 1.6J stations (one
taking its limits in A) on one site, the real server and control loop.

The scenario is ``tests/test_live_mixed.py``'s (four vehicles plug in at 16:00 with 70% and
leave at 02:00 wanting 80%; the site may import 16 kW and export 10 kW), which the test
runs at 1,500 times; here the clock runs 60 times faster than real time, so the evening
takes about 11 minutes. Printed: the site's power at every sample once every vehicle is in
the plan (its maximum and minimum against the limits), each vehicle's SoC as it left, the
energy each station took and gave, and the calls that failed.

Run: ``python benchmarks/bench_mixed_evening.py [--speed 60]``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' scenario

from tests.test_live_mixed import (
    EXPORT_LIMIT_KW,
    IMPORT_LIMIT_KW,
    METER_INTERVAL_S,
    VERSIONS,
    first_plan_of_all,
    run_evening,
)

from v2ghub.store.repository import Store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--speed", type=float, default=60.0, help="times real speed")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="v2ghub-evening-") as folder:
        store = Store.open(data_dir=Path(folder) / "data")
        fleet, _, samples = asyncio.run(
            run_evening(store, speed=args.speed, meter_interval_s=METER_INTERVAL_S, sample_s=0.5)
        )
        since = first_plan_of_all(store) + timedelta(seconds=METER_INTERVAL_S)
        site = [sum(powers.values()) for at, powers in samples if at > since]
        sessions = {record.station_id: record for record in store.sessions()}
        stats = fleet.stats()
        print(
            f"evening at {args.speed:g}x: {time.perf_counter() - began:.0f} s of wall time, "
            f"{len(site)} samples of the site's power from {since:%H:%M} UTC"
        )
        within = max(site) <= IMPORT_LIMIT_KW + 0.05 and min(site) >= -EXPORT_LIMIT_KW - 0.05
        print(
            f"site power max {max(site):.2f} kW (import limit {IMPORT_LIMIT_KW:g}), "
            f"min {min(site):.2f} kW (export limit {EXPORT_LIMIT_KW:g}): "
            f"{'within' if within else 'OUTSIDE'}"
        )
        for station_id, version in VERSIONS.items():
            record = sessions[station_id]
            metered = stats.stations[station_id]
            print(
                f"{station_id} {version.value:>9}: left at SoC {record.soc}, took "
                f"{metered.import_wh / 1000:.2f} kWh, gave {metered.export_wh / 1000:.2f} kWh"
            )
        print(f"call errors {sum(stats.call_errors.values())}, unsent {stats.unsent_events}")
        store.close()


if __name__ == "__main__":
    main()
