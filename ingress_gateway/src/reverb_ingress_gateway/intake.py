"""Group commit: concurrent requests share a transaction (SendEvents, and webhook deliveries).

A request's item waits in a queue; a few committers (at most `max_in_flight`)
each take everything queued (up to `max_batch` of the items' size), store it with
one statement (`store`: the events and their fan-out jobs, or the deliveries and
theirs), and answer every request in it once it commits. When idle, a request is
committed at once, alone; under load, each commit carries many requests, so
PostgreSQL sees far fewer transactions and the gateway far fewer round trips. A
request is answered only after its item committed; if a group fails because of one
request's data, each request is retried alone so that only the faulty one fails.
"""

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar, cast

import asyncpg

from reverb_ingress_gateway.errors import InvalidArgument, InvalidEvent, Unavailable
from reverb_store import EventGroup, NewEvent, insert_event_groups

Item = TypeVar("Item")
Result = TypeVar("Result")


@dataclass(frozen=True, slots=True)
class _Request(Generic[Item, Result]):
    item: Item
    answer: asyncio.Future[Result]


class GroupCommit(Generic[Item, Result]):
    """`submit(item)` answers the item's result once `store` committed it, with others."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        store: Callable[[asyncpg.Connection, list[Item]], Awaitable[Sequence[Result]]],
        *,
        acquire_timeout: float,
        refused: Callable[[str], InvalidArgument],
        size: Callable[[Item], int] = lambda _: 1,
        max_in_flight: int = 4,
        max_batch: int = 10_000,
    ) -> None:
        self._pool = pool
        self._store = store
        self._acquire_timeout = acquire_timeout
        # The error of one item PostgreSQL refuses (a DataError), from its message.
        self._refused = refused
        self._size = size
        self._max_in_flight = max_in_flight
        self._max_batch = max_batch
        self._queue: deque[_Request[Item, Result]] = deque()
        self._in_flight = 0
        self._committers: set[asyncio.Task[None]] = set()

    async def submit(self, item: Item) -> Result:
        answer: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._queue.append(_Request(item, answer))
        if self._in_flight < self._max_in_flight:
            self._in_flight += 1
            committer = asyncio.create_task(self._commit_queued())
            self._committers.add(committer)
            committer.add_done_callback(self._committers.discard)
        return await answer

    def _take(self) -> list[_Request[Item, Result]]:
        batch = [self._queue.popleft()]
        size = self._size(batch[0].item)
        while self._queue and size + self._size(self._queue[0].item) <= self._max_batch:
            request = self._queue.popleft()
            size += self._size(request.item)
            batch.append(request)
        return batch

    async def _commit_queued(self) -> None:
        try:
            while self._queue:
                await self._commit(self._take())
        finally:
            self._in_flight -= 1

    async def _commit(self, batch: list[_Request[Item, Result]]) -> None:
        try:
            async with self._pool.acquire(timeout=self._acquire_timeout) as proxy:
                connection = cast(asyncpg.Connection, proxy)
                # One statement, one round trip: atomic without BEGIN/COMMIT around it.
                results = await self._store(connection, [request.item for request in batch])
        except asyncpg.exceptions.DataError as error:
            if len(batch) > 1:
                for request in batch:
                    await self._commit([request])
                return
            _fail(batch, self._refused(str(error)))
            return
        except Exception as error:
            _fail(batch, error)
            return
        except BaseException:
            _fail(batch, Unavailable("the gateway is shutting down"))
            raise
        for request, result in zip(batch, results, strict=True):
            if not request.answer.done():
                request.answer.set_result(result)


def _fail(batch: Sequence[_Request[Item, Result]], error: Exception) -> None:
    for request in batch:
        if not request.answer.done():
            request.answer.set_exception(error)


class EventIntake:
    """SendEvents' group commit: each request's events are one `EventGroup`."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        acquire_timeout: float,
        max_in_flight: int = 4,
        max_batch_events: int = 10_000,
    ) -> None:
        self._commits: GroupCommit[EventGroup, list[str]] = GroupCommit(
            pool,
            insert_event_groups,
            acquire_timeout=acquire_timeout,
            refused=lambda message: InvalidEvent(f"an event cannot be stored: {message}"),
            size=lambda group: len(group.events),
            max_in_flight=max_in_flight,
            max_batch=max_batch_events,
        )

    async def accept(self, events: Sequence[NewEvent], traceparent: str | None) -> list[str]:
        """The events' ids, once they are committed with their fan-out job."""
        return await self._commits.submit(EventGroup(events, traceparent))
