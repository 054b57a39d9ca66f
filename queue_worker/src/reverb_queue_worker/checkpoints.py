"""Group commit of step outputs: one writer per worker, one transaction per batch.

Every run driven by this worker hands its `step.run` outputs to the writer.
While a batch's transaction is in flight, new outputs accumulate; the next
batch starts the moment the previous one commits. Idle, a lone output is
written at once (no timer); busy, many runs share each commit.

The writer keeps one pooled connection for itself, so a batch costs one
statement (one round trip, one implicit transaction): no acquire, no reset.
"""

import asyncio
import contextlib
from typing import cast

import asyncpg
import structlog
from asyncpg.pool import PoolConnectionProxy

from reverb_store.execution import OutputCommit, StepOutput, commit_outputs

_log = structlog.get_logger("reverb.queue_worker")

_Pending = tuple[StepOutput, "asyncio.Future[OutputCommit]"]


class CheckpointWriter:
    """Batches step outputs of all concurrent runs into shared transactions."""

    def __init__(self, pool: asyncpg.Pool, max_batch: int = 1000) -> None:
        self._pool = pool
        self._max_batch = max_batch
        self._pending: list[_Pending] = []
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connection: PoolConnectionProxy | None = None
        # Transactions written so far (observability and tests).
        self.transactions = 0

    def start(self) -> None:
        if self._task is None:
            self._loop = asyncio.get_running_loop()
            self._task = self._loop.create_task(self._write_loop(), name="reverb-checkpoints")

    async def commit(self, output: StepOutput) -> OutputCommit:
        """Make the output durable; return the committed state (another run's if it won).

        Raises asyncpg.DataError if the output is not storable JSON.
        """
        return await self.submit(output)

    def submit(self, output: StepOutput) -> "asyncio.Future[OutputCommit]":
        """Queue the output for the next batch; the future resolves once it is durable.

        RuntimeError when the writer is not running.
        """
        if self._task is None or self._loop is None or self._task.done():
            raise RuntimeError("the checkpoint writer is not running")
        future: asyncio.Future[OutputCommit] = self._loop.create_future()
        self._pending.append((output, future))
        if not self._ready.is_set():
            self._ready.set()
        return future

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        pending, self._pending = self._pending, []
        for _, future in pending:
            if not future.done():
                future.set_exception(RuntimeError("the worker is stopping"))
        await self._let_go()

    async def _write_loop(self) -> None:
        while True:
            await self._ready.wait()
            self._ready.clear()
            while self._pending:
                batch = self._pending[: self._max_batch]
                del self._pending[: self._max_batch]
                await self._write([item for item in batch if not item[1].done()])

    async def _write(self, batch: list[_Pending]) -> None:
        if not batch:
            return
        outputs = [output for output, _ in batch]
        try:
            try:
                results = await commit_outputs(await self._held(), outputs)
            except (OSError, asyncpg.InterfaceError, asyncpg.PostgresConnectionError):
                # The held connection died (e.g. a database restart): once more on a new
                # one. Safe: a batch that did commit conflicts with itself and returns
                # the same outputs.
                await self._let_go()
                results = await commit_outputs(await self._held(), outputs)
            self.transactions += 1
        except asyncpg.DataError as error:
            # One output the database refuses must not fail the others.
            if len(batch) > 1:
                for item in batch:
                    await self._write([item])
                return
            _settle(batch[0][1], error=error)
            return
        except Exception as error:
            _log.warning("checkpoint batch failed", steps=len(batch), error=str(error))
            await self._let_go()
            for _, future in batch:
                _settle(future, error=error)
            return
        for (_, future), result in zip(batch, results, strict=True):
            _settle(future, result=result)

    async def _held(self) -> asyncpg.Connection:
        connection = self._connection
        if connection is None or connection.is_closed():
            connection = self._connection = await self._pool.acquire()
        # A proxy that behaves as a Connection (as in `database.acquire`).
        return cast(asyncpg.Connection, connection)

    async def _let_go(self) -> None:
        """Give the held connection back (the pool closes it if it is broken)."""
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await self._pool.release(connection)


def _settle(
    future: "asyncio.Future[OutputCommit]",
    *,
    result: OutputCommit | None = None,
    error: BaseException | None = None,
) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    elif result is not None:
        future.set_result(result)
