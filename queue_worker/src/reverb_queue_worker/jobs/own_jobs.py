"""Jobs this worker runs itself, without a trip through pgqueuer's dequeue.

Two kinds: the runs a fan-out creates already claimed for this worker (their
jobs are inserted picked), and due jobs it takes from the queue whenever it has
room: the moment one of its jobs ends while work may be waiting, and when a
wake-up comes due. Wake-ups cost no memory per sleeping run: one timer is armed
for the earliest delayed job or run wake-up this worker knows of (every job it
runs, dequeued or its own, hands over the wake-ups its handler scheduled when it
ends: `ended`), and when it fires the worker turns due run wake-ups into jobs
(`reverb_store.jobs.wakeups`), takes every due job (wake-ups first) and reads the
next due time from the queue and the wake-ups' table. The timer is armed at least
every poll interval, so the wake-ups of a worker that died are found too.

Either way the job's row is `picked` by this worker's queue manager, so
pgqueuer counts it against the worker's concurrency, and this worker keeps its
heartbeat fresh until it ends. If the worker dies, the heartbeat goes stale and
pgqueuer hands the job to another worker, as it does any job; delayed jobs and
run wake-ups whose scheduler died are found by the other workers' timers and polls. The
worker's slots are counted in `slots`.
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
from reverb_queue_worker.jobs.active import ActiveJob
from reverb_queue_worker.jobs.slots import Booking, Slots
from reverb_store import jobs

_log = structlog.get_logger("reverb.queue_worker")

# What runs a job this worker took from the queue: the job, and its stored payload.
Handler = Callable[[ActiveJob, bytes], Awaitable[None]]

# After a failed take (the database unreachable), the queue is looked at again this soon.
_RETRY_SECONDS = 1.0


class OwnJobs:
    """Heartbeats, completions and wake-ups of the jobs this worker runs itself."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        concurrency: int,
        heartbeat_seconds: float,
        poll_seconds: float = 5.0,
    ) -> None:
        """`heartbeat_seconds`: how often running jobs' heartbeats are refreshed;
        `poll_seconds`: the longest the timer waits before looking at the due times again
        (wake-ups scheduled by a worker that died armed no timer here)."""
        self._pool = pool
        self._heartbeat_seconds = heartbeat_seconds
        self._poll_seconds = poll_seconds
        self.slots = Slots(concurrency)
        # Set while a queue manager runs: jobs are picked in its name.
        self.queue_manager_id: UUID | None = None
        self._handler: Handler | None = None
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._finished: list[int] = []
        self._flush = asyncio.Event()
        # Due work may be waiting in the queue: take it when there is room.
        self._backlog = True
        # The next due time is read from the queue after the next take.
        self._find_next = True
        self._taking: asyncio.Task[None] | None = None
        # The one wake-up timer, and when it fires (loop time): under uvloop a timer due
        # within a millisecond is a plain Handle, which cannot tell.
        self._alarm: asyncio.Handle | None = None
        self._alarm_at = 0.0
        self._keeper: asyncio.Task[None] | None = None
        self._beaten_at = 0.0
        # Stopping: no new jobs are taken; then the keep loop's last round.
        self._closing = False
        self._stopping = False

    def start(self, handler: Handler) -> None:
        self._handler = handler
        self._keeper = asyncio.create_task(self._keep_loop(), name="reverb-own-jobs")

    def attach(self, queue_manager_id: UUID, dequeued: Callable[[], int]) -> None:
        """A queue manager runs: pick jobs in its name; `dequeued` counts the jobs it runs."""
        self.queue_manager_id = queue_manager_id
        self.slots.dequeued = dequeued

    def detach(self) -> None:
        """The queue manager stopped: no job is picked, no slot booked until the next one."""
        self.queue_manager_id = None
        self.slots.dequeued = None

    def booking(self) -> Booking:
        """Slots to book for runs about to be created claimed here (see `Slots`)."""
        return self.slots.booking()

    def run(
        self, job: ActiveJob, work: Callable[[], Awaitable[None]], booking: Booking | None
    ) -> None:
        """Run `work` for the picked `job`, in a slot of `booking` (None: a take's)."""
        self.slots.started(booking)
        task = asyncio.create_task(self._run(job, work), name=f"reverb-job-{job.id}")
        self._tasks[job.id] = task
        task.add_done_callback(lambda _: self._done(job.id))

    def _done(self, job_id: int) -> None:
        self._tasks.pop(job_id, None)
        self.slots.ended()
        self.freed()

    def ended(self, job: ActiveJob) -> None:
        """Once a job's handler returned (or raised): arm the timer for the wake-ups it
        scheduled, which are committed by now."""
        if job.wake_at is not None:
            self._arm(job.wake_at)

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

    async def _run(self, job: ActiveJob, work: Callable[[], Awaitable[None]]) -> None:
        finished = True
        try:
            await work()
        except RetryRequested:
            # The database is unreachable: leave the job to go stale, so that a worker
            # (maybe this one) takes it again once its heartbeat is old.
            finished = False
        except asyncio.CancelledError:
            raise
        except Exception:
            _log.exception("job failed", job_id=job.id)
        finally:
            self.ended(job)
            if finished:
                # Usually the run's transition already deleted the row; this catches the rest.
                self._finished.append(job.id)
                self._flush.set()

    def _arm(self, at: float) -> None:
        """Fire the wake-up timer at loop time `at`, unless it fires sooner already."""
        if self._closing:
            return
        if self._alarm is not None:
            if self._alarm_at <= at:
                return
            self._alarm.cancel()
        self._alarm_at = at
        self._alarm = asyncio.get_running_loop().call_at(at, self._rang)

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

        The room is not booked while the take is in flight (see `Slots`).
        """
        while self._backlog or self._find_next:
            queue_manager_id = self.queue_manager_id
            room = self.slots.free()
            if queue_manager_id is None or room == 0:
                return
            # Cleared before the take: news of more work during it sets them again.
            find_next, self._find_next = self._find_next, False
            self._backlog = False
            try:
                async with acquire(self._pool) as connection:
                    if find_next:
                        # One transaction: a job falling due between the take and the
                        # read is in one of them, so its wake-up is not lost.
                        taken, next_due = await jobs.take_due_and_next(
                            connection, queue_manager_id, room
                        )
                    else:
                        taken = await jobs.take_due(connection, queue_manager_id, room)
                        next_due = None
            except Exception as error:
                self._backlog = True
                self._find_next = self._find_next or find_next
                _log.warning("taking due jobs failed", error=f"{type(error).__name__}: {error}")
                self._arm(asyncio.get_running_loop().time() + _RETRY_SECONDS)
                return
            if len(taken) == room:
                self._backlog = True  # the room ran out first: more may be due
                # Due run wake-ups may be left too: they are promoted by the next one.
                self._find_next = self._find_next or find_next
            for job in taken:
                active = ActiveJob(job.job_id, job.kind)
                self.run(active, self._work(active, job.payload), None)
            if find_next:
                # The next due time, or the poll's, whichever is sooner: a wake-up whose
                # worker died is found within a poll interval of its due time.
                wait = self._poll_seconds if next_due is None else max(next_due, 0.0)
                self._arm(asyncio.get_running_loop().time() + min(wait, self._poll_seconds))

    def _work(self, job: ActiveJob, payload: bytes) -> Callable[[], Awaitable[None]]:
        handler = self._handler
        assert handler is not None, "start() binds the handler"
        return lambda: handler(job, payload)

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
