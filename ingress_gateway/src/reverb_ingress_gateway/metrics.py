"""The gateway's Prometheus metrics, served on REVERB_METRICS_ADDRESS (see reverb_telemetry)."""

from prometheus_client import CollectorRegistry, Counter


class GatewayMetrics:
    """One gateway's metrics, on a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._events_accepted = Counter(
            "reverb_events_accepted",
            "Events accepted (committed with their fan-out job), by where they came from.",
            ("source",),
            registry=self.registry,
        )
        self.api_events = self._events_accepted.labels("api")
        self.webhook_events = self._events_accepted.labels("webhook")
