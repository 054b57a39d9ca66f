"""The worker's queue upkeep: every `REVERB_WORKER_QUEUE_VACUUM_INTERVAL`, a
`VACUUM (ANALYZE)` of the queue's short-lived tables (`reverb_store.jobs.upkeep`), by
one worker of the deployment at a time.

Each round opens a connection of its own and closes it: the advisory lock that picks the
one worker is a session's, and a pooled connection must never keep one (a round
cancelled mid-VACUUM would leave it held by a connection the pool reuses).
"""

import asyncio
import contextlib

import asyncpg
import structlog

from reverb_store import jobs

_log = structlog.get_logger("reverb.queue_worker")


class QueueUpkeep:
    """Vacuums the queue's tables every `interval_seconds` until stopped."""

    def __init__(self, database_url: str, interval_seconds: float) -> None:
        self._database_url = database_url
        self._interval = interval_seconds
        self._task: asyncio.Task[None] | None = None
        # Rounds that vacuumed (another worker's turn, or a failure, does not count).
        self.rounds = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="reverb-queue-upkeep")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                connection = await asyncpg.connect(self._database_url)
                try:
                    if await jobs.vacuum_queue(connection):
                        self.rounds += 1
                finally:
                    await connection.close()
            except (asyncpg.PostgresError, OSError, TimeoutError) as error:
                # The next round tries again; the queue only grows meanwhile.
                _log.warning("queue vacuum failed", error=f"{type(error).__name__}: {error}")
