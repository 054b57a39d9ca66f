"""Group commit of claims, step outputs and run completions: one writer per kind, per
worker.

Every `advance_run` job of this worker hands its run's claim to the writer when it
starts (the claim without gates: `execution.claim_runs`), and every run it drives its
`step.run` outputs, and its result when it completes. While a batch's statement is in flight, new
items accumulate; the next batch starts the moment the previous one commits.
Idle, a lone item is written at once (no timer); busy, many runs share each
commit.

Each kind keeps one pooled connection for itself, so a batch costs one
statement (one round trip, one implicit transaction): no acquire, no reset.
"""

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from typing import Generic, TypeVar, cast

import asyncpg
import structlog
from asyncpg.pool import PoolConnectionProxy

from reverb_store.execution import ClaimedRun, OutputCommit, StepOutput, claim_runs, commit_outputs
from reverb_store.execution.completions import RunCompletion, complete_runs
from reverb_store.execution.gates import NO_GATES, Gates, Handover
from reverb_store.ids import JobId, RunId

_log = structlog.get_logger("reverb.queue_worker")

Item = TypeVar("Item")
Result = TypeVar("Result")

# A completion batch's Handover (None: the held runs its frees admit are queued for any
# worker), whose runs are driven once the batch committed: see `driver.handing`.
Handing = Callable[[], AbstractContextManager[Handover | None]]


# Claims in one statement at most: each locks its run's row until the batch commits.
_MAX_CLAIMS = 100


def _queued() -> AbstractContextManager[Handover | None]:
    return contextlib.nullcontext(None)


class CheckpointWriter:
    """Batches the step outputs, and the completions, of all concurrent runs."""

    def __init__(self, pool: asyncpg.Pool, max_batch: int = 1000, gates: Gates = NO_GATES) -> None:
        """`gates`: the worker's run gates, told of the gated runs a batch completes."""
        # A batch that did commit before its connection died conflicts with itself when
        # written again, and returns the same outputs: outputs are retried once.
        self._outputs = _Batcher(pool, commit_outputs, "outputs", max_batch, retry=True)

        # Set by the worker once it can drive runs (`driver.handing`).
        self.handing: Handing = _queued

        async def complete(
            connection: asyncpg.Connection, completions: list[RunCompletion]
        ) -> list[bool]:
            with self.handing() as handover:
                return await complete_runs(connection, completions, gates, handover)

        self._completions = _Batcher(pool, complete, "completions", max_batch, retry=False)

        # A worker with gates claims the runs no gate applies to here; the others go
        # through the gates (`admission.claim_run`). Not retried: a claim that committed
        # before its connection died would count the invocation twice.
        async def claim(
            connection: asyncpg.Connection, requests: list[tuple[RunId, JobId]]
        ) -> list[ClaimedRun | None]:
            return await claim_runs(connection, requests, ungated=bool(gates))

        self._claims = _Batcher(pool, claim, "claims", _MAX_CLAIMS, retry=False)

    @property
    def transactions(self) -> int:
        """Output batches written so far (observability and tests)."""
        return self._outputs.transactions

    @property
    def claim_transactions(self) -> int:
        """Claim batches written so far (observability and tests)."""
        return self._claims.transactions

    def start(self) -> None:
        self._outputs.start()
        self._completions.start()
        self._claims.start()

    async def claim(self, run_id: RunId, job_id: JobId) -> ClaimedRun | None:
        """Claim the run for its job, with the claims of the other jobs starting now; None
        if it is not claimed here (not claimable; with gates, also a gated run: the gates'
        claim decides). A resumed run's memo is not loaded yet (`execution.with_memo`).

        Raises RuntimeError when the writer is not running, and the database's error if
        the batch failed.
        """
        return await self._claims.submit((run_id, job_id))

    async def commit(self, output: StepOutput) -> OutputCommit:
        """Make the output durable; return the committed state (another run's if it won).

        Raises asyncpg.DataError if the output is not storable JSON.
        """
        return await self.submit(output)

    def submit(self, output: StepOutput) -> "asyncio.Future[OutputCommit]":
        """Queue the output for the next batch; the future resolves once it is durable.

        RuntimeError when the writer is not running.
        """
        return self._outputs.submit(output)

    async def complete(self, completion: RunCompletion) -> bool:
        """Complete a parentless run its job drives (telling the gates, if it is gated);
        False if left to `complete_run`.

        Raises asyncpg.DataError if the output is not storable JSON, RuntimeError
        when the writer is not running, and the database's error if the batch failed.
        """
        return await self._completions.submit(completion)

    async def close(self) -> None:
        await self._claims.close()
        await self._outputs.close()
        await self._completions.close()


class _Batcher(Generic[Item, Result]):
    """One writer task committing queued items with `write(connection, items)`."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        write: Callable[[asyncpg.Connection, list[Item]], Awaitable[list[Result]]],
        name: str,
        max_batch: int,
        *,
        retry: bool,
    ) -> None:
        self._pool = pool
        self._write_items = write
        self._name = name
        self._max_batch = max_batch
        self._retry = retry
        self._pending: list[tuple[Item, asyncio.Future[Result]]] = []
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connection: PoolConnectionProxy | None = None
        self.transactions = 0

    def start(self) -> None:
        if self._task is None:
            self._loop = asyncio.get_running_loop()
            self._task = self._loop.create_task(self._write_loop(), name=f"reverb-{self._name}")

    def submit(self, item: Item) -> "asyncio.Future[Result]":
        if self._task is None or self._loop is None or self._task.done():
            raise RuntimeError("the checkpoint writer is not running")
        future: asyncio.Future[Result] = self._loop.create_future()
        self._pending.append((item, future))
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
                await self._write([entry for entry in batch if not entry[1].done()])

    async def _write(self, batch: list[tuple[Item, "asyncio.Future[Result]"]]) -> None:
        if not batch:
            return
        items = [item for item, _ in batch]
        try:
            try:
                results = await self._write_items(await self._held(), items)
            except (OSError, asyncpg.InterfaceError, asyncpg.PostgresConnectionError):
                # The held connection died (e.g. a database restart).
                await self._let_go()
                if not self._retry:
                    raise
                results = await self._write_items(await self._held(), items)
            self.transactions += 1
        except asyncpg.DataError as error:
            # One item the database refuses must not fail the others.
            if len(batch) > 1:
                for entry in batch:
                    await self._write([entry])
                return
            _settle(batch[0][1], error=error)
            return
        except Exception as error:
            _log.warning("batch failed", batch=self._name, size=len(batch), error=str(error))
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
    future: "asyncio.Future[Result]",
    *,
    result: Result | None = None,
    error: BaseException | None = None,
) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(cast(Result, result))
