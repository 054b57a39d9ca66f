"""Jobs this worker runs itself, without a trip through pgqueuer's dequeue.

Two kinds: the runs a fan-out creates already claimed for this worker (their
jobs are inserted picked), and the wake-ups this worker scheduled (a delayed
job it enqueued), which it picks by id when they come due. Either way the job's
row is `picked` by this worker's queue manager, so pgqueuer counts it against
the worker's concurrency, and this worker keeps its heartbeat fresh until it
ends. If the worker dies, the heartbeat goes stale and pgqueuer hands the job to
another worker, as it does any job. A delayed job whose scheduler died is found
by the other workers' polls.
"""

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from uuid import UUID

import asyncpg
import structlog
from pgqueuer.errors import RetryRequested

from reverb_queue_worker.database import acquire
from reverb_store import jobs

_log = structlog.get_logger("reverb.queue_worker")

# What runs a job this worker took by id: (job id, entrypoint, payload).
Handler = Callable[[int, str, bytes], Awaitable[None]]


class OwnJobs:
    """Heartbeats, completions and wake-ups of the jobs this worker runs itself."""

    def __init__(self, pool: asyncpg.Pool, concurrency: int, heartbeat_seconds: float) -> None:
        """`heartbeat_seconds`: how often running jobs' heartbeats are refreshed."""
        self._pool = pool
        self._concurrency = concurrency
        self._heartbeat_seconds = heartbeat_seconds
        # Set while a queue manager runs: jobs are picked in its name.
        self.queue_manager_id: UUID | None = None
        # How many jobs pgqueuer runs in this worker now.
        self.dequeued: Callable[[], int] = lambda: 0
        self._handler: Handler | None = None
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._reserved = 0
        self._finished: list[int] = []
        self._flush = asyncio.Event()
        self._due: list[int] = []
        self._taking: asyncio.Task[None] | None = None
        # Wake-ups waiting for their time, by job id.
        self._timers: dict[int, asyncio.TimerHandle] = {}
        self._keeper: asyncio.Task[None] | None = None
        self._beaten_at = 0.0
        self._stopping = False

    def start(self, handler: Handler) -> None:
        self._handler = handler
        self._keeper = asyncio.create_task(self._keep_loop(), name="reverb-own-jobs")

    def reserve(self, wanted: int) -> int:
        """Book up to `wanted` slots of the worker's concurrency; return how many were booked."""
        if self.queue_manager_id is None:
            return 0
        busy = self.dequeued() + len(self._tasks) + self._reserved
        granted = max(0, min(wanted, self._concurrency - busy))
        self._reserved += granted
        return granted

    def unreserve(self, count: int) -> None:
        self._reserved -= count

    def run(self, job_id: int, work: Callable[[], Awaitable[None]], *, reserved: bool) -> None:
        """Run `work` for the picked job `job_id` (a reserved slot is used, if `reserved`)."""
        if reserved:
            self._reserved -= 1
        task = asyncio.create_task(self._run(job_id, work), name=f"reverb-job-{job_id}")
        self._tasks[job_id] = task
        task.add_done_callback(lambda _: self._ended(job_id))

    def _ended(self, job_id: int) -> None:
        self._tasks.pop(job_id, None)
        self.freed()

    def wake_at(self, scheduled: list[jobs.Scheduled]) -> None:
        """Take these delayed jobs when they come due (as soon as there is room, if none then)."""
        loop = asyncio.get_running_loop()
        for each in scheduled:
            delay = each.delay.total_seconds()
            self._timers[each.job_id] = loop.call_later(delay, self._came_due, each.job_id)

    @property
    def running(self) -> int:
        return len(self._tasks)

    async def stop(self, grace_seconds: float) -> None:
        """Let running jobs end within `grace_seconds`, then cancel them (they hand over)."""
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        if self._taking is not None:
            self._taking.cancel()
        tasks = list(self._tasks.values())
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace_seconds)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        self._stopping = True
        self._flush.set()
        if self._keeper is not None:
            await self._keeper

    async def _run(self, job_id: int, work: Callable[[], Awaitable[None]]) -> None:
        finished = True
        try:
            with jobs.collect_scheduled() as scheduled:
                await work()
            self.wake_at(scheduled)
        except RetryRequested:
            # The database is unreachable: leave the job to go stale, so that a worker
            # (maybe this one) takes it again once its heartbeat is old.
            finished = False
        except asyncio.CancelledError:
            raise
        except Exception:
            _log.exception("job failed", job_id=job_id)
        finally:
            if finished:
                # Usually the run's transition already deleted the row; this catches the rest.
                self._finished.append(job_id)
                self._flush.set()

    def _came_due(self, job_id: int) -> None:
        self._timers.pop(job_id, None)
        self._due.append(job_id)
        self._take_soon()

    def freed(self) -> None:
        """A job of this worker ended: due wake-ups waiting for room may be taken."""
        if self._due:
            self._take_soon()

    def _take_soon(self) -> None:
        if self._taking is None or self._taking.done():
            self._taking = asyncio.create_task(self._take_due(), name="reverb-wake-ups")

    async def _take_due(self) -> None:
        """Take due wake-ups, oldest first, as long as there is room (`freed` resumes)."""
        while self._due:
            queue_manager_id = self.queue_manager_id
            room = self.reserve(len(self._due))
            if queue_manager_id is None or room == 0:
                return
            due, self._due = self._due[:room], self._due[room:]
            try:
                async with acquire(self._pool) as connection:
                    taken = await jobs.take(connection, due, queue_manager_id)
            except Exception as error:
                self.unreserve(room)
                _log.warning("taking due jobs failed", error=f"{type(error).__name__}: {error}")
                # pgqueuer's dequeue finds them (it polls while due work waits).
                continue
            # Those not taken were taken by a dequeue meanwhile (or are not due yet by the
            # database's clock: pgqueuer's dequeue finds them then).
            self.unreserve(room - len(taken))
            for job in taken:
                self.run(job.job_id, self._work(job), reserved=True)

    def _work(self, job: jobs.TakenJob) -> Callable[[], Awaitable[None]]:
        handler = self._handler
        assert handler is not None, "start() binds the handler"
        return lambda: handler(job.job_id, job.entrypoint, job.payload)

    async def _keep_loop(self) -> None:
        """Until stopped (then once more): finished jobs' rows and heartbeats, as they fall due."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._heartbeat_seconds):
                    await self._flush.wait()
            self._flush.clear()
            try:
                await self._keep()
            except Exception as error:
                _log.warning("job heartbeat failed", error=f"{type(error).__name__}: {error}")
            if self._stopping:
                return

    async def _keep(self) -> None:
        """Delete finished jobs' rows; refresh running ones' heartbeats when they are due."""
        now = time.monotonic()
        finished, self._finished = self._finished, []
        running = list(self._tasks) if now - self._beaten_at >= self._heartbeat_seconds else []
        if not finished and not running:
            return
        try:
            async with acquire(self._pool) as connection:
                await jobs.keep(connection, running, finished)
        except BaseException:
            self._finished.extend(finished)
            raise
        if running:
            self._beaten_at = now
