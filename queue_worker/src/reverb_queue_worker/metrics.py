"""The worker's Prometheus metrics (served on REVERB_METRICS_ADDRESS, `reverb_telemetry.metrics`).

Counted in the process, cheaply, where things happen: runs started, completed and failed
per function, each step attempt's duration (host's start to end) per function, cron ticks
fired, and those missed and skipped by function and reason. Read at scrape time from
PostgreSQL: the queue's jobs per kind and state, and the age of the oldest due job (every
worker reports the same queue: aggregate with `max`, not `sum`). A step's histogram child
is looked up once per invocation, so a step
costs one `observe` (a `LoopHistogram`: no lock, one bisect).
"""

import asyncio
from collections.abc import Callable, Iterable

import asyncpg
from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import GaugeMetricFamily

from reverb_queue_worker.database import acquire
from reverb_store import jobs
from reverb_telemetry.metrics import LoopHistogram, LoopReading

# Seconds: from a fast in-memory step to a slow remote call.
STEP_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class WorkerMetrics:
    """One worker's metrics, on a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        labels = ("function_id",)
        self.runs_started = Counter(
            "reverb_runs_started",
            "Runs that began their first attempt.",
            labels,
            registry=self.registry,
        )
        self.runs_completed = Counter(
            "reverb_runs_completed", "Runs that completed.", labels, registry=self.registry
        )
        self.runs_failed = Counter(
            "reverb_runs_failed",
            "Runs that failed for good (retries exhausted, or not retriable).",
            labels,
            registry=self.registry,
        )
        self.step_duration = LoopHistogram(
            "reverb_step_duration_seconds",
            "Duration of each step attempt, as the host timed it.",
            labels,
            STEP_BUCKETS,
        )
        self.registry.register(self.step_duration)
        self.cron_ticks_fired = Counter(
            "reverb_cron_ticks_fired",
            "Cron ticks that started a run.",
            registry=self.registry,
        )
        self.cron_ticks_missed = Counter(
            "reverb_cron_ticks_missed",
            "Cron ticks that passed while no worker fired them, left out by the schedule's"
            " catch-up policy (reason: catch_up_skip, catch_up_latest, catch_up_window).",
            ("function_id", "reason"),
            registry=self.registry,
        )
        self.cron_ticks_skipped = Counter(
            "reverb_cron_ticks_skipped",
            "Cron ticks skipped while the schedule's previous run had not ended, by its overlap"
            " policy (reason: previous_running, buffer_full, superseded).",
            ("function_id", "reason"),
            registry=self.registry,
        )
        self.host_sessions = Gauge(
            "reverb_worker_host_sessions",
            "Invoke sessions this worker has open to function hosts.",
            registry=self.registry,
        )

    def ended(self, function_id: str, status: str) -> None:
        """A run ended: `completed` or `failed`."""
        counter = self.runs_completed if status == "completed" else self.runs_failed
        counter.labels(function_id).inc()

    def step_timer(self, function_id: str) -> Callable[[float], None]:
        """`observe(seconds)` for one function's step attempts."""
        return self.step_duration.timer(function_id)

    def watch_queue(self, loop: asyncio.AbstractEventLoop, pool: asyncpg.Pool) -> None:
        """Read the queue's depth from `pool` at each scrape (on `loop`)."""

        async def read() -> Iterable[GaugeMetricFamily]:
            async with asyncio.timeout(READ_TIMEOUT), acquire(pool) as connection:
                depth = await jobs.depth(connection)
            queued = GaugeMetricFamily(
                "reverb_queue_jobs",
                "Jobs in the queue, by kind and state (due, delayed, running).",
                labels=("kind", "state"),
            )
            for (kind, state), count in sorted(depth.jobs.items()):
                queued.add_metric([kind, state], count)
            oldest = GaugeMetricFamily(
                "reverb_queue_oldest_due_job_age_seconds",
                "How long the oldest job that is due (and not taken) has waited (0: none).",
            )
            oldest.add_metric([], depth.oldest_due_seconds)
            return [queued, oldest]

        self.registry.register(LoopReading(loop, read))


READ_TIMEOUT = 1.0
