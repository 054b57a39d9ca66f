"""Jobs this worker runs itself, without a trip through pgqueuer's dequeue.

Two kinds: the runs a fan-out creates already claimed for this worker (their
jobs are inserted picked), and due jobs it takes from the queue whenever it has
room: the moment one of its jobs ends while work may be waiting, and when a
wake-up comes due. Wake-ups cost no memory per sleeping run: one timer is armed
for the earliest delayed job this worker knows of, and when it fires the worker
takes every due job (wake-ups first) and reads the next due time from the queue.

Either way the job's row is `picked` by this worker's queue manager, so
pgqueuer counts it against the worker's concurrency, and this worker keeps its
heartbeat fresh until it ends. If the worker dies, the heartbeat goes stale and
pgqueuer hands the job to another worker, as it does any job; delayed jobs
whose scheduler died are found by the other workers' timers and polls.
"""

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterator
from uuid import UUID

import asyncpg
import structlog
from pgqueuer.errors import RetryRequested

from reverb_queue_worker.database import acquire
from reverb_store import jobs

_log = structlog.get_logger("reverb.queue_worker")

# What runs a job this worker took by id: (job id, entrypoint, payload).
Handler = Callable[[int, str, bytes], Awaitable[None]]

# After a failed take (the database unreachable), the queue is looked at again this soon.
_RETRY_SECONDS = 1.0


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
        # Due work may be waiting in the queue: take it when there is room.
        self._backlog = True
        # The next due time is read from the queue after the next take.
        self._find_next = True
        self._taking: asyncio.Task[None] | None = None
        # The one wake-up timer.
        self._alarm: asyncio.TimerHandle | None = None
        self._keeper: asyncio.Task[None] | None = None
        self._beaten_at = 0.0
        # Stopping: no new jobs are taken; then the keep loop's last round.
        self._closing = False
        self._stopping = False

    def start(self, handler: Handler) -> None:
        self._handler = handler
        self._keeper = asyncio.create_task(self._keep_loop(), name="reverb-own-jobs")

    def room(self) -> int:
        """Free slots of the worker's concurrency."""
        if self.queue_manager_id is None:
            return 0
        return max(0, self._concurrency - self.dequeued() - len(self._tasks) - self._reserved)

    def reserve(self, wanted: int) -> int:
        """Book up to `wanted` slots of the worker's concurrency; return how many were booked."""
        granted = min(wanted, self.room())
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

    @contextlib.contextmanager
    def waking(self) -> Iterator[None]:
        """Around a job's work: once it succeeds, arm the timer for the wake-ups it enqueued."""
        with jobs.collect_scheduled() as delays:
            yield
        if delays:
            self._arm(min(delays).total_seconds())

    def backlog(self) -> None:
        """Due jobs may be queued (a fan-out queued runs it had no room for): take them."""
        self._backlog = True
        self._take_soon()

    def freed(self) -> None:
        """A job of this worker ended: take due work, if some may be waiting."""
        if self._backlog or self._find_next:
            self._take_soon()

    async def stop(self, grace_seconds: float) -> None:
        """Let running jobs end within `grace_seconds`, then cancel them (they hand over)."""
        self._closing = True
        if self._alarm is not None:
            self._alarm.cancel()
            self._alarm = None
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
            with self.waking():
                await work()
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

    def _arm(self, delay: float) -> None:
        """Fire the wake-up timer in `delay` seconds, unless it fires sooner already."""
        if self._closing:
            return
        loop = asyncio.get_running_loop()
        at = loop.time() + max(delay, 0.0)
        if self._alarm is not None:
            if self._alarm.when() <= at:
                return
            self._alarm.cancel()
        self._alarm = loop.call_at(at, self._rang)

    def _rang(self) -> None:
        self._alarm = None
        self._find_next = True
        self.backlog()

    def _take_soon(self) -> None:
        if self._closing or self.queue_manager_id is None:
            return
        if self._taking is None or self._taking.done():
            self._taking = asyncio.create_task(self._take_due(), name="reverb-take-due")

    async def _take_due(self) -> None:
        """Take due jobs while there is room and some may be waiting (`freed` resumes).

        The room is not booked while the take is in flight: a fan-out meanwhile
        still drives the runs it creates, and the worker may then run a few jobs
        more than its concurrency for as long as those take.
        """
        while self._backlog or self._find_next:
            queue_manager_id = self.queue_manager_id
            room = self.room()
            if queue_manager_id is None or room == 0:
                return
            # Cleared before the take: news of more work during it sets them again.
            find_next, self._find_next = self._find_next, False
            self._backlog = False
            try:
                async with acquire(self._pool) as connection:
                    taken = await jobs.take_due(connection, queue_manager_id, room)
                    next_due = await jobs.next_due(connection) if find_next else None
            except Exception as error:
                self._backlog = True
                self._find_next = self._find_next or find_next
                _log.warning("taking due jobs failed", error=f"{type(error).__name__}: {error}")
                self._arm(_RETRY_SECONDS)
                return
            if len(taken) == room:
                self._backlog = True  # the room ran out first: more may be due
            if next_due is not None:
                self._arm(next_due)
            for job in taken:
                self.run(job.job_id, self._work(job), reserved=False)

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
        # A job that just finished may still be among the tasks (its done callback is
        # yet to run): it is not running.
        beat = now - self._beaten_at >= self._heartbeat_seconds
        running = list(self._tasks.keys() - set(finished)) if beat else []
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
