"""A queue worker: pgqueuer consumers for `process_event` and `advance_run`."""

import asyncio
import contextlib
import signal

import asyncpg
import structlog
from pgqueuer.db import AsyncpgDriver
from pgqueuer.errors import RetryRequested
from pgqueuer.models import Job
from pgqueuer.qm import QueueManager
from pgqueuer.queries import Queries

from reverb_queue_worker.backoff import HOST_CAP, backoff
from reverb_queue_worker.checkpoints import CheckpointWriter
from reverb_queue_worker.driver import advance_run
from reverb_queue_worker.fanout import process_event
from reverb_queue_worker.hosts import HostChannels
from reverb_queue_worker.retries import HostRetries
from reverb_queue_worker.services import Services
from reverb_queue_worker.settings import WorkerSettings
from reverb_store import jobs
from reverb_telemetry import configure_logging, configure_tracing

_log = structlog.get_logger("reverb.queue_worker")


class Worker:
    """A running worker. `await stop()` drains it: in-flight jobs get the shutdown timeout."""

    def __init__(
        self,
        services: Services,
        queue_connection: asyncpg.Connection,
        queue_manager: QueueManager,
    ) -> None:
        self.services = services
        self._queue_connection = queue_connection
        self._queue_manager = queue_manager
        self._task: asyncio.Task[None] | None = None

    def _run_queue(self) -> None:
        settings = self.services.settings
        batch_size = max(1, min(10, settings.worker_concurrency // 2))
        self._task = asyncio.create_task(
            self._queue_manager.run(
                # pgqueuer is woken by inserts; a dead worker's job becomes pickable again
                # silently (an update), so poll at least once per heartbeat timeout.
                dequeue_timeout=settings.worker_heartbeat_timeout,
                batch_size=batch_size,
                max_concurrent_tasks=settings.worker_concurrency,
                heartbeat_timeout=settings.worker_heartbeat_timeout,
            ),
            name="reverb-queue-worker",
        )

    async def stop(self) -> None:
        """Stop taking jobs, let in-flight ones finish (or release their runs), close."""
        self._queue_manager.shutdown.set()
        if self._task is not None:
            timeout = self.services.settings.worker_shutdown_timeout.total_seconds()
            done, _ = await asyncio.wait({self._task}, timeout=timeout)
            if not done:
                self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.services.checkpoints.close()
        await self.services.hosts.close()
        await self._queue_connection.close()
        await self.services.pool.close()
        _log.info("worker stopped")


def _register(queue_manager: QueueManager, services: Services) -> None:
    base = services.settings.backoff_base

    def retry_later(job: Job, error: Exception) -> RetryRequested:
        _log.exception("job failed", entrypoint=job.entrypoint, job_id=job.id, exc_info=error)
        return RetryRequested(backoff(job.attempts, base=base, cap=HOST_CAP), reason=str(error))

    @queue_manager.entrypoint(jobs.PROCESS_EVENT)
    async def process_event_job(job: Job) -> None:
        try:
            await process_event(services, jobs.ProcessEvent.decode(job.payload or b"{}"))
        except Exception as error:
            raise retry_later(job, error) from error

    @queue_manager.entrypoint(jobs.ADVANCE_RUN)
    async def advance_run_job(job: Job) -> None:
        try:
            payload = jobs.AdvanceRun.decode(job.payload or b"{}")
            await advance_run(services, int(job.id), payload)
        except RetryRequested:
            raise
        except Exception as error:
            raise retry_later(job, error) from error


async def start(settings: WorkerSettings) -> Worker:
    """Connect, check the queue's schema, and start consuming jobs."""
    pool = await asyncpg.create_pool(
        settings.database_url, min_size=1, max_size=settings.database_pool_size
    )
    try:
        queue_connection = await asyncpg.connect(settings.database_url)
    except BaseException:
        await pool.close()
        raise
    key = settings.signing_key.get_secret_value() if settings.signing_key else None
    checkpoints = CheckpointWriter(pool)
    services = Services(settings, pool, checkpoints, HostChannels(pool, key), HostRetries())
    queue_manager = QueueManager(Queries(AsyncpgDriver(queue_connection)))
    _register(queue_manager, services)
    try:
        await queue_manager.verify_structure()
    except BaseException:
        await queue_connection.close()
        await pool.close()
        raise
    checkpoints.start()
    worker = Worker(services, queue_connection, queue_manager)
    worker._run_queue()
    _log.info("worker started", concurrency=settings.worker_concurrency)
    return worker


async def run(settings: WorkerSettings) -> None:
    """Run a worker until cancelled or sent SIGTERM/SIGINT, then stop it gracefully."""
    configure_logging(json=settings.log_json, level=settings.log_level)
    configure_tracing("reverb-queue-worker")
    worker = await start(settings)
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
