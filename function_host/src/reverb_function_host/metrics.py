"""The host's Prometheus metrics, served on REVERB_METRICS_ADDRESS (see reverb_telemetry)."""

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Gauge


class HostMetrics:
    """One host's metrics, on a registry of its own: read from the servicer at scrape time."""

    def __init__(self, sessions: Callable[[], int]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        Gauge(
            "reverb_host_sessions",
            "Invoke sessions (streams from workers) open on this host.",
            registry=self.registry,
        ).set_function(sessions)
