"""Group commit for SendEvents: concurrent requests share a transaction.

A request's events wait in a queue; a few committers (at most `max_in_flight`)
each take everything queued (up to `max_batch_events`), store it with one
statement (the events and their fan-out jobs), and answer every request in it
once it commits. When idle, a request is committed at once, alone; under load, each
commit carries many requests, so PostgreSQL sees far fewer transactions and
the gateway far fewer round trips. A request is answered only after its
events committed; if a group fails because of one request's data, each request
is retried alone so that only the faulty one fails.
"""

import asyncio
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import asyncpg

from reverb_ingress_gateway.errors import InvalidEvent, Unavailable
from reverb_store import EventGroup, NewEvent, insert_event_groups


@dataclass(frozen=True, slots=True)
class _Request:
    group: EventGroup
    answer: asyncio.Future[list[str]]


class EventIntake:
    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        acquire_timeout: float,
        max_in_flight: int = 4,
        max_batch_events: int = 10_000,
    ) -> None:
        self._pool = pool
        self._acquire_timeout = acquire_timeout
        self._max_in_flight = max_in_flight
        self._max_batch_events = max_batch_events
        self._queue: deque[_Request] = deque()
        self._in_flight = 0
        self._committers: set[asyncio.Task[None]] = set()

    async def accept(self, events: Sequence[NewEvent], traceparent: str | None) -> list[str]:
        """The events' ids, once they are committed with their fan-out job."""
        answer: asyncio.Future[list[str]] = asyncio.get_running_loop().create_future()
        self._queue.append(_Request(EventGroup(events, traceparent), answer))
        if self._in_flight < self._max_in_flight:
            self._in_flight += 1
            committer = asyncio.create_task(self._commit_queued())
            self._committers.add(committer)
            committer.add_done_callback(self._committers.discard)
        return await answer

    def _take(self) -> list[_Request]:
        batch = [self._queue.popleft()]
        size = len(batch[0].group.events)
        while self._queue and size + len(self._queue[0].group.events) <= self._max_batch_events:
            request = self._queue.popleft()
            size += len(request.group.events)
            batch.append(request)
        return batch

    async def _commit_queued(self) -> None:
        try:
            while self._queue:
                await self._commit(self._take())
        finally:
            self._in_flight -= 1

    async def _commit(self, batch: list[_Request]) -> None:
        try:
            async with self._pool.acquire(timeout=self._acquire_timeout) as proxy:
                connection = cast(asyncpg.Connection, proxy)
                # One statement, one round trip: atomic without BEGIN/COMMIT around it.
                ids = await insert_event_groups(connection, [item.group for item in batch])
        except asyncpg.exceptions.DataError as error:
            if len(batch) > 1:
                for request in batch:
                    await self._commit([request])
                return
            _fail(batch, InvalidEvent(f"an event cannot be stored: {error}"))
            return
        except Exception as error:
            _fail(batch, error)
            return
        except BaseException:
            _fail(batch, Unavailable("the gateway is shutting down"))
            raise
        for request, request_ids in zip(batch, ids, strict=True):
            if not request.answer.done():
                request.answer.set_result(request_ids)


def _fail(batch: list[_Request], error: Exception) -> None:
    for request in batch:
        if not request.answer.done():
            request.answer.set_exception(error)
