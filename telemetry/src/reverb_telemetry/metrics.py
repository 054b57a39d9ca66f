"""Prometheus metrics: each service's registry (never prometheus-client's global one) and the
`/metrics` endpoint that serves it on `REVERB_METRICS_ADDRESS`.

The endpoint is prometheus-client's own HTTP server, on a thread of its own: a scrape never
waits for the service's event loop, except for a gauge read from the database at scrape time
(`LoopReading`), which runs its query on the loop and waits a bounded time for it.
"""

import asyncio
import bisect
import math
import threading
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

# Seconds a scrape waits for a reading made on the service's loop.
READING_TIMEOUT = 2.0


class MetricsAddressError(ValueError):
    """REVERB_METRICS_ADDRESS is not `host:port`."""


def split_address(address: str) -> tuple[str, int]:
    """`host:port` (`[v6]:port` too) as its host and port; port 0: any free port."""
    host, separator, port = address.rpartition(":")
    if not separator or not host or not port.isdigit() or int(port) > 65535:
        raise MetricsAddressError(f"metrics address {address!r} is not host:port")
    return host.strip("[]"), int(port)


def checked_address(address: str | None) -> str | None:
    """`address` if it is `host:port` (or None); for the settings' validators."""
    if address is not None:
        split_address(address)
    return address


@dataclass
class MetricsServer:
    """A running `/metrics` endpoint (any path answers the exposition, as prometheus-client's
    server does); `port` is the one bound."""

    host: str
    port: int
    _server: WSGIServer
    _thread: threading.Thread

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def serve_metrics(address: str, registry: CollectorRegistry) -> MetricsServer:
    """Serve `registry` at `http://address/metrics` until `close`."""
    host, port = split_address(address)
    server, thread = start_http_server(port, addr=host, registry=registry)
    return MetricsServer(host, server.server_port, server, thread)


class LoopReading(Collector):
    """Gauges read at scrape time by a coroutine run on the service's event loop (a database
    query); a reading that fails or takes longer than `READING_TIMEOUT` is left out of that
    scrape (the scrape still answers, with everything else)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        read: Callable[[], Awaitable[Iterable[GaugeMetricFamily]]],
    ) -> None:
        self._loop = loop
        self._read = read

    def collect(self) -> Iterable[Metric]:
        if self._loop.is_closed():
            return []

        async def reading() -> list[GaugeMetricFamily]:
            return list(await self._read())

        future = asyncio.run_coroutine_threadsafe(reading(), self._loop)
        try:
            return future.result(timeout=READING_TIMEOUT)
        except Exception:
            future.cancel()
            return []

    def describe(self) -> Iterable[Metric]:
        # Registering must not run the reading (it would block the loop that registers it).
        return []


class LogSinkMetrics(Collector):
    """`reverb_log_sink_backlog` (records buffered, not yet written),
    `reverb_log_sink_written_total` (records the sink stored) and
    `reverb_log_sink_dropped_total` (records dropped because the buffer was full), read
    from the service's log writer at scrape time: the writer keeps the numbers, this only
    reads them (`register_log_sink`)."""

    def __init__(
        self, backlog: Callable[[], int], dropped: Callable[[], int], written: Callable[[], int]
    ) -> None:
        self._backlog = backlog
        self._dropped = dropped
        self._written = written

    def collect(self) -> Iterable[Metric]:
        backlog = GaugeMetricFamily(
            "reverb_log_sink_backlog", "Log records buffered for the log sink, not yet written."
        )
        backlog.add_metric([], self._backlog())
        written = CounterMetricFamily("reverb_log_sink_written", "Log records the log sink stored.")
        written.add_metric([], self._written())
        dropped = CounterMetricFamily(
            "reverb_log_sink_dropped",
            "Log records dropped because the log sink's buffer was full.",
        )
        dropped.add_metric([], self._dropped())
        return [backlog, written, dropped]


def register_log_sink(
    registry: CollectorRegistry,
    backlog: Callable[[], int],
    dropped: Callable[[], int],
    written: Callable[[], int],
) -> None:
    """Expose a log writer's backlog, drop and write counts on `registry` (see
    `LogSinkMetrics`)."""
    registry.register(LogSinkMetrics(backlog, dropped, written))


class LoopHistogram(Collector):
    """A labelled histogram observed only on the service's event loop, with no lock per
    observation: prometheus-client's `Histogram` takes a lock and makes several calls for
    each `observe`, which is a step's cost on the step-commit path. `timer(labels)` looks
    a label set's counts up once and returns its `observe(value)`: one bisect and two adds.

    A scrape (on the metrics server's thread) reads the counts while the loop may add to
    them: a bucket may be one observation ahead of the sum, never wrong for long, and the
    exposition is built from one copy of each list, so it is always cumulative.
    """

    def __init__(
        self,
        name: str,
        documentation: str,
        labels: tuple[str, ...],
        buckets: tuple[float, ...],
    ) -> None:
        self._name = name
        self._documentation = documentation
        self._labels = labels
        self._bounds = tuple(sorted(buckets))
        # Per label values: counts per bucket (the last one is +Inf), then the sum at the end.
        self._series: dict[tuple[str, ...], list[float]] = {}

    def timer(self, *values: str) -> Callable[[float], None]:
        """`observe(value)` for the series of these label values."""
        if len(values) != len(self._labels):
            raise ValueError(f"{self._name} takes the labels {self._labels}, got {values}")
        series = self._series.setdefault(values, [0.0] * (len(self._bounds) + 2))
        bounds = self._bounds
        total = len(bounds) + 1
        locate = bisect.bisect_left

        def observe(value: float) -> None:
            series[locate(bounds, value)] += 1
            series[total] += value

        return observe

    def collect(self) -> Iterable[Metric]:
        family = HistogramMetricFamily(self._name, self._documentation, labels=self._labels)
        for values, series in list(self._series.items()):
            counts = list(series)
            cumulative = 0.0
            buckets: list[tuple[str, float]] = []
            for bound, count in zip((*self._bounds, math.inf), counts, strict=False):
                cumulative += count
                buckets.append(("+Inf" if bound == math.inf else repr(float(bound)), cumulative))
            family.add_metric(list(values), buckets, counts[-1])
        return [family]

    def describe(self) -> Iterable[Metric]:
        return [HistogramMetricFamily(self._name, self._documentation, labels=self._labels)]
