"""The log writer: documents are recorded in memory and written in batches, off the run.

`record` never waits, never raises and costs an append: the writer's task takes what
was recorded since its last write and hands it to the sink as one batch (one COPY, one
`insert_many`) at most every `interval`. While the sink fails (an outage), documents stay
buffered up to `capacity`; past it the newest are dropped and counted (`dropped`), the
outage and the drops are logged once each, and the batch is retried with backoff. No
run waits for a log, and none fails because of one.

The same task deletes documents older than the retention, in batches, once an hour.
"""

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Protocol

import structlog

from reverb_store.logs.documents import LogDocument

_log = structlog.get_logger("reverb.logs")

# Documents a retention pass deletes per statement.
PURGE_BATCH = 10_000


class Sink(Protocol):
    """Where documents are stored (`postgres.PostgresSink`, `mongodb.MongoSink`)."""

    async def open(self) -> None:
        """Prepare the store (e.g. create indexes); may raise if it cannot be reached."""

    async def write(self, documents: list[LogDocument]) -> None:
        """Store the batch (all or nothing is fine: a failed batch is written again)."""

    async def purge(self, older_than: datetime, limit: int) -> int:
        """Delete up to `limit` documents older than the time; return how many."""

    async def close(self) -> None: ...


class LogWriter:
    """Buffers documents and writes them to its sink in batches (module docstring)."""

    def __init__(
        self,
        sink: Sink | None,
        *,
        capacity: int = 100_000,
        batch: int = 5_000,
        interval: float = 0.2,
        retention: timedelta | None = None,
        retention_interval: float = 3600.0,
        close_within: float = 5.0,
        step_documents: bool = False,
        purge_batch: int = PURGE_BATCH,
    ) -> None:
        self._sink = sink
        self.enabled = sink is not None
        # Whether completed step.run outputs get a document (else they are derived from
        # reverb.steps at read time: `reverb_store.logs.steps`).
        self.step_documents = step_documents and sink is not None
        self._capacity = capacity
        self._batch = batch
        self._interval = interval
        self._retention = retention
        self._retention_interval = retention_interval
        self._close_within = close_within
        self._purge_batch = purge_batch
        self._buffer: deque[LogDocument] = deque()
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        # Documents kept in the buffer since start; written; dropped.
        self._kept = 0
        self.written = 0
        self.dropped = 0
        self.failures = 0
        self._dropping = False

    @property
    def backlog(self) -> int:
        """Documents recorded and not written yet."""
        return len(self._buffer)

    def record(self, document: LogDocument) -> None:
        """Keep the document for the next batch (or count it dropped if the buffer is full)."""
        if not self.enabled:
            return
        if len(self._buffer) >= self._capacity:
            self.dropped += 1
            if not self._dropping:
                self._dropping = True
                _log.warning("log buffer full, dropping documents", capacity=self._capacity)
            return
        buffer = self._buffer
        buffer.append(document)
        self._kept += 1
        # Wake the writer when there is something to write, and when a batch is full.
        if len(buffer) == 1 or len(buffer) == self._batch:
            self._ready.set()

    def record_all(self, documents: Iterable[LogDocument]) -> None:
        for document in documents:
            self.record(document)

    async def start(self) -> None:
        """Open the sink (errors are logged: documents stay buffered until it answers)."""
        if self._sink is None or self._task is not None:
            return
        try:
            await self._sink.open()
        except Exception as error:
            _log.warning("log sink not ready, documents are buffered", error=_describe(error))
        self._task = asyncio.create_task(self._run(), name="reverb-logs")

    async def flush(self) -> None:
        """Wait until every document recorded so far is written (drops are not waited for).

        Waits for as long as the sink fails: bound it with `asyncio.timeout`."""
        if self._task is None or self.written >= self._kept:
            return
        future = asyncio.get_running_loop().create_future()
        self._waiters.append((self._kept, future))
        self._ready.set()
        await future

    async def close(self) -> None:
        """Write what is buffered (for at most `close_within` seconds), stop, close the sink."""
        task, self._task = self._task, None
        if task is None:
            return
        if self._buffer:
            self._ready.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained(), self._close_within)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        if self._buffer:
            _log.warning("log documents not written at stop", count=len(self._buffer))
        if self._sink is not None:
            with contextlib.suppress(Exception):
                await self._sink.close()

    async def _drained(self) -> None:
        while self._buffer and self._task is not None:
            future = asyncio.get_running_loop().create_future()
            self._waiters.append((self._kept, future))
            await future

    async def _run(self) -> None:
        failures = 0
        next_purge = time.monotonic()
        last_write = 0.0
        while True:
            if self._retention is not None and time.monotonic() >= next_purge:
                await self.purge()
                next_purge = time.monotonic() + self._retention_interval
            if not self._buffer:
                self._ready.clear()
                self._wake_waiters()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._ready.wait(), self._retention_interval)
                continue
            # One batch per interval at most, unless a full batch waits or a flush asks.
            wait = last_write + self._interval - time.monotonic()
            if wait > 0 and len(self._buffer) < self._batch and not self._waiters:
                self._ready.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._ready.wait(), wait)
                continue
            last_write = time.monotonic()
            if await self._write_batch():
                if failures:
                    _log.info("log sink reachable again", dropped=self.dropped)
                failures = 0
                continue
            failures += 1
            await asyncio.sleep(min(self._interval * 2**failures, 30.0))

    async def _write_batch(self) -> bool:
        assert self._sink is not None
        count = min(len(self._buffer), self._batch)
        batch = [self._buffer[index] for index in range(count)]
        try:
            await self._sink.write(batch)
        except Exception as error:
            self.failures += 1
            if self.failures == 1 or self.failures % 100 == 0:
                _log.warning(
                    "log sink write failed, documents kept",
                    error=_describe(error),
                    backlog=len(self._buffer),
                    dropped=self.dropped,
                )
            return False
        for _ in range(count):
            self._buffer.popleft()
        self.written += count
        self._dropping = False
        self._wake_waiters()
        return True

    def _wake_waiters(self) -> None:
        if not self._waiters:
            return
        # Written in order: the first `mark` documents kept are written once `written` is.
        waiting = []
        for mark, future in self._waiters:
            if future.done():
                continue
            if mark <= self.written:
                future.set_result(None)
            else:
                waiting.append((mark, future))
        self._waiters = waiting

    async def purge(self) -> int:
        """Delete the documents past the retention, a batch per statement; how many.

        Run hourly by the writer's task (and at its start); errors are logged."""
        if self._sink is None or self._retention is None:
            return 0
        older_than = datetime.now(UTC) - self._retention
        total = 0
        try:
            while True:
                deleted = await self._sink.purge(older_than, self._purge_batch)
                total += deleted
                if deleted < self._purge_batch:
                    break
        except Exception as error:
            _log.warning("log retention failed", error=_describe(error))
            return total
        if total:
            _log.info("old log documents deleted", count=total, older_than=older_than.isoformat())
        return total


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"
