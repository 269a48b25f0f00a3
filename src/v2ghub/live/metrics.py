"""The live aggregator's metrics in Prometheus' text format (``GET /metrics``).

One :class:`LiveMetrics` per server, with its own registry (never the process-wide one):
OCPP messages by action and how long each took to handle, setpoints sent by answer, web
API requests and their time, and, read at each scrape, the stations connected, the plans,
fallbacks and failures of the control loop, the last plan's time and age.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class LiveMetrics:
    """Counters and histograms of one server."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.ocpp_messages = Counter(
            "v2ghub_ocpp_messages",
            "OCPP requests received from stations, by action",
            ["action"],
            registry=self.registry,
        )
        self.ocpp_seconds = Histogram(
            "v2ghub_ocpp_handling_seconds",
            "Time from an OCPP request's arrival to its answer being sent",
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.setpoints = Counter(
            "v2ghub_setpoints",
            "Setpoints sent to stations, by how they were answered",
            ["status"],
            registry=self.registry,
        )
        self.api_seconds = Histogram(
            "v2ghub_api_request_seconds",
            "Web API request time, by route",
            ["route"],
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self._gauges: dict[str, Gauge] = {}

    def gauge(self, name: str, documentation: str, read: Callable[[], float]) -> None:
        """A gauge read at each scrape (set once; a second call replaces the reader)."""
        gauge = self._gauges.get(name)
        if gauge is None:
            gauge = Gauge(name, documentation, registry=self.registry)
            self._gauges[name] = gauge
        gauge.set_function(read)

    def drop_web(self) -> None:
        """Leave out the web API's metrics (its own process counts them)."""
        self.registry.unregister(self.api_seconds)

    def drop_ocpp(self) -> None:
        """Leave out the OCPP server's metrics (the web API's own process: the server's
        process counts them)."""
        for collector in (self.ocpp_messages, self.ocpp_seconds, self.setpoints):
            self.registry.unregister(collector)

    def text(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
