"""A job this worker runs, as its handler sees it: its id, its kind, and its wake-ups."""

import asyncio
from datetime import timedelta

from reverb_store.ids import JobId
from reverb_store.jobs import KindName


class ActiveJob:
    """One job running in this worker, dequeued by pgqueuer or run by the worker itself.

    It is the `reverb_store.jobs.Wakeups` of everything its handler schedules: it keeps
    the earliest wake-up (in the loop's time), which is armed once the handler returns,
    so after the handler's transactions committed (a timer firing before a commit would
    find nothing due, and the wake-up would wait for a poll).
    """

    __slots__ = ("attempts", "id", "kind", "wake_at")

    def __init__(self, job_id: JobId, kind: KindName, attempts: int = 0) -> None:
        self.id = job_id
        self.kind = kind
        self.attempts = attempts
        self.wake_at: float | None = None

    def wake_in(self, delay: timedelta) -> None:
        at = asyncio.get_running_loop().time() + delay.total_seconds()
        if self.wake_at is None or at < self.wake_at:
            self.wake_at = at
