"""A queue worker: pgqueuer consumers for every job kind (`jobs.entrypoints`).

pgqueuer listens and dequeues on a dedicated connection; runs and
checkpoints use a pool. If the dedicated connection is lost (a database
restart), the worker reconnects with backoff until it is stopped. Runs its
fan-outs create and wake-ups it scheduled are run here directly (`own_jobs`).
"""

import asyncio
import contextlib
import importlib
import signal
from collections.abc import Callable, Sequence

import asyncpg
import structlog
from pgqueuer.db import AsyncpgDriver
from pgqueuer.qm import QueueManager
from pgqueuer.queries import Queries

from reverb.signing import Keyring
from reverb_queue_worker.backoff import HOST_CAP, backoff
from reverb_queue_worker.database import open_pool, retrying_refusals
from reverb_queue_worker.hosts.channels import HostChannels
from reverb_queue_worker.hosts.retries import HostRetries
from reverb_queue_worker.hosts.tls import channel_credentials
from reverb_queue_worker.jobs import entrypoints
from reverb_queue_worker.jobs.active import ActiveJob
from reverb_queue_worker.jobs.own_jobs import OwnJobs
from reverb_queue_worker.jobs.upkeep import QueueUpkeep
from reverb_queue_worker.metrics import WorkerMetrics
from reverb_queue_worker.runs.checkpoints import CheckpointWriter
from reverb_queue_worker.runs.driver import handing
from reverb_queue_worker.services import SYSTEM_CLOCK, Clock, Services
from reverb_queue_worker.settings import WorkerSettings
from reverb_store import jobs
from reverb_store.execution import Gate, Gates
from reverb_store.flow.gates import flow_gates
from reverb_store.logs.sinks import writer_for
from reverb_telemetry import configure_logging, configure_tracing
from reverb_telemetry.metrics import MetricsServer, register_log_sink, serve_metrics

_log = structlog.get_logger("reverb.queue_worker")

QUEUE_APPLICATION_NAME = "reverb-queue-worker"


class Worker:
    """A running worker. `await stop()` drains it: in-flight jobs get the shutdown timeout."""

    def __init__(
        self,
        services: Services,
        queue_connection: asyncpg.Connection,
        metrics_server: MetricsServer | None = None,
        upkeep: QueueUpkeep | None = None,
    ) -> None:
        self.services = services
        # GET /metrics (REVERB_METRICS_ADDRESS), or None.
        self.metrics_server = metrics_server
        # The queue's periodic vacuum (None: REVERB_WORKER_QUEUE_VACUUM_INTERVAL=0).
        self.upkeep = upkeep
        self._stopping = asyncio.Event()
        self._queue_manager: QueueManager | None = None
        self._task = asyncio.create_task(self._consume(queue_connection), name="reverb-worker")

    async def stop(self) -> None:
        """Stop taking jobs, let in-flight ones finish (or release their runs), close."""
        self._stopping.set()
        if self._queue_manager is not None:
            self._queue_manager.shutdown.set()
        if self.upkeep is not None:
            await self.upkeep.stop()
        timeout = self.services.settings.worker_shutdown_timeout.total_seconds()
        own_jobs = asyncio.create_task(self.services.own_jobs.stop(timeout))
        done, _ = await asyncio.wait({self._task}, timeout=timeout)
        if not done:
            self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        await own_jobs
        await self.services.checkpoints.close()
        await self.services.logs.close()
        await self.services.hosts.close()
        if self.metrics_server is not None:
            await asyncio.to_thread(self.metrics_server.close)
        await self.services.pool.close()
        _log.info("worker stopped")

    async def _consume(self, connection: asyncpg.Connection | None) -> None:
        settings = self.services.settings
        while connection is not None:
            queue_manager = QueueManager(Queries(AsyncpgDriver(connection)))
            entrypoints.register(queue_manager, self.services)
            self._queue_manager = queue_manager
            own_jobs = self.services.own_jobs
            own_jobs.attach(queue_manager.queue_manager_id, _counter(queue_manager))
            # Take what is due already, and arm the timer for the next wake-up.
            own_jobs.backlog()
            if self._stopping.is_set():
                queue_manager.shutdown.set()
            # A lost connection would leave pgqueuer waiting for notifications that
            # cannot come: stop it (in-flight jobs finish) and reconnect.
            connection.add_termination_listener(_stopper(queue_manager))
            try:
                # Jobs due now are notified on Reverb's channel (migration 0021): this
                # worker takes them at once; pgqueuer's dequeue polls for what is left.
                await connection.add_listener(jobs.CHANNEL, _notified(own_jobs))
                await queue_manager.run(
                    # Notified only of jobs due at once (migration 0002): poll for the rest.
                    dequeue_timeout=min(
                        settings.worker_poll_interval, settings.worker_heartbeat_timeout
                    ),
                    batch_size=max(1, min(10, settings.worker_concurrency // 2)),
                    max_concurrent_tasks=settings.worker_concurrency,
                    heartbeat_timeout=settings.worker_heartbeat_timeout,
                )
            except asyncio.CancelledError:
                own_jobs.detach()
                connection.terminate()
                raise
            except Exception as error:
                own_jobs.detach()
                _log.warning("queue connection lost", error=f"{type(error).__name__}: {error}")
                connection.terminate()
            else:
                own_jobs.detach()
                if self._stopping.is_set():
                    await connection.close()
                    return
                _log.warning("queue connection lost")
                connection.terminate()
            connection = await self._reconnect()

    async def _reconnect(self) -> asyncpg.Connection | None:
        """A new queue connection, retried with backoff; None once the worker is stopping."""
        failures = 0
        while not self._stopping.is_set():
            delay = backoff(failures, base=self.services.settings.backoff_base, cap=HOST_CAP)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay.total_seconds())
                return None
            try:
                connection = await connect_queue(self.services.settings)
            except (OSError, asyncpg.PostgresError, TimeoutError) as error:
                failures += 1
                _log.warning("reconnecting to the queue failed", error=type(error).__name__)
                continue
            _log.info("queue connection restored")
            return connection
        return None


def _counter(queue_manager: QueueManager) -> Callable[[], int]:
    def dequeued() -> int:
        return len(queue_manager.job_context)

    return dequeued


def _notified(own_jobs: OwnJobs) -> Callable[[object, int, str, object], None]:
    def notified(_connection: object, _pid: int, _channel: str, _payload: object) -> None:
        own_jobs.backlog()

    return notified


def _stopper(queue_manager: QueueManager) -> Callable[[object], None]:
    def stop(_: object) -> None:
        queue_manager.shutdown.set()

    return stop


# pgqueuer's statements on its connection are planned at every execution with their
# values. asyncpg prepares them, and PostgreSQL's generic plan of a prepared statement
# cannot use pgqueuer's partial indexes (`WHERE status = 'queued'`: the status is a
# parameter) nor size `id = ANY($1)`, so once a connection had run one five times it
# could become a sequential scan of the whole queue table. Measured in the waits bench
# (10,000 runs waiting, each with its timeout's delayed job; pg_stat_statements): the
# completions 994 → 56 buffers and 11 → 0.26 ms a call, the queued-work count 600-900 →
# 36 buffers and 8-24 → 0.16 ms (docs/architecture.md, "Waiting for events").
QUEUE_SERVER_SETTINGS = {
    "application_name": QUEUE_APPLICATION_NAME,
    "plan_cache_mode": "force_custom_plan",
}


async def connect_queue(settings: WorkerSettings) -> asyncpg.Connection:
    return await asyncpg.connect(settings.database_url, server_settings=QUEUE_SERVER_SETTINGS)


async def start(
    settings: WorkerSettings, gates: Sequence[Gate] = (), clock: Clock = SYSTEM_CLOCK
) -> Worker:
    """Connect, check the queue's schema, and start consuming jobs.

    While PostgreSQL refuses connections (not up yet, too many clients), connecting is
    retried with backoff, each retry logged; a configuration error (a bad password, an
    unknown role or database, a schema not migrated) is raised at once.

    `gates`: the run gates runs must pass before they execute (`reverb_store.execution.
    admission`); every worker of a deployment registers the same ones. `clock`: the
    time the cron scheduler fires schedules by (tests drive one).
    """
    entrypoints.check()
    # pgqueuer's first job would import anyio's asyncio backend (tens of ms): do it now.
    importlib.import_module("anyio._backends._asyncio")
    base = settings.backoff_base
    pool = await retrying_refusals(
        lambda: open_pool(settings.database_url, settings.database_pool_size),
        base=base,
        what="the connection pool",
    )
    try:
        queue_connection = await retrying_refusals(
            lambda: connect_queue(settings), base=base, what="the queue connection"
        )
        try:
            await QueueManager(Queries(AsyncpgDriver(queue_connection))).verify_structure()
        except BaseException:
            await queue_connection.close()
            raise
    except BaseException:
        await pool.close()
        raise
    keyring = signing_keyring(settings)
    run_gates = Gates(gates)
    checkpoints = CheckpointWriter(pool, gates=run_gates)
    checkpoints.start()
    logs = writer_for(settings, pool)
    await logs.start()
    own_jobs = OwnJobs(
        pool,
        settings.worker_concurrency,
        heartbeat_seconds=settings.worker_heartbeat_timeout.total_seconds() / 4,
        poll_seconds=min(
            settings.worker_poll_interval, settings.worker_heartbeat_timeout
        ).total_seconds(),
    )
    hosts = HostChannels(pool, keyring, channel_credentials(settings))
    metrics = WorkerMetrics()
    metrics.host_sessions.set_function(hosts.open_sessions)
    metrics.watch_queue(asyncio.get_running_loop(), pool)
    register_log_sink(
        metrics.registry, lambda: logs.backlog, lambda: logs.dropped, lambda: logs.written
    )
    services = Services(
        settings,
        pool,
        checkpoints,
        hosts,
        HostRetries(),
        own_jobs,
        run_gates,
        clock,
        metrics=metrics,
        logs=logs,
    )

    checkpoints.handing = lambda: handing(services)

    async def handle_own(job: ActiveJob, payload: bytes) -> None:
        await entrypoints.handle(services, job, payload)

    metrics_server = None
    if settings.metrics_address is not None:
        metrics_server = serve_metrics(settings.metrics_address, metrics.registry)
    own_jobs.start(handle_own)
    upkeep = None
    if settings.worker_queue_vacuum_interval:
        upkeep = QueueUpkeep(
            settings.database_url, settings.worker_queue_vacuum_interval.total_seconds()
        )
        upkeep.start()
    worker = Worker(services, queue_connection, metrics_server, upkeep)
    _log.info(
        "worker started",
        concurrency=settings.worker_concurrency,
        metrics=None if metrics_server is None else metrics_server.url,
    )
    return worker


def signing_keyring(settings: WorkerSettings) -> Keyring | None:
    """The keys Starts are signed with (None without REVERB_SIGNING_KEY)."""
    if settings.signing_key is None:
        return None
    return Keyring(settings.signing_key.get_secret_value())


async def run(settings: WorkerSettings) -> None:
    """Run a worker until cancelled or sent SIGTERM/SIGINT, then stop it gracefully."""
    configure_logging(json=settings.log_json, level=settings.log_level)
    tracing = configure_tracing("reverb-worker")
    worker = await start(settings, flow_gates())
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    handled = []
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal_number, stopping.set)
            handled.append(signal_number)
    try:
        await stopping.wait()
    finally:
        for signal_number in handled:
            loop.remove_signal_handler(signal_number)
        await worker.stop()
        await asyncio.to_thread(tracing.shutdown)
