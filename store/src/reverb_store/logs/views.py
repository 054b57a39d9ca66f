"""What the logs API reads: the sink's documents, with a run's moments that no process
writes made from its rows: its step completions from reverb.steps when they are not
written (`steps`), and its cancellation from reverb.runs (`cancellations`)."""

import dataclasses
from collections.abc import Awaitable, Callable
from typing import cast

import asyncpg

from reverb_store.logs.cancellations import cancellation
from reverb_store.logs.documents import RUN_CANCELLED, STEP_COMPLETED, Level, LogDocument
from reverb_store.logs.queries import LogQuery, LogReader
from reverb_store.logs.steps import completed_steps, merged

Derive = Callable[[asyncpg.Connection, str], Awaitable[list[LogDocument]]]


@dataclasses.dataclass(frozen=True, slots=True)
class _Derived:
    kind: str
    level: Level
    read: Derive


_STEPS = _Derived(STEP_COMPLETED, "info", completed_steps)
_CANCELLATION = _Derived(RUN_CANCELLED, "warning", cancellation)


class LogViews:
    def __init__(self, reader: LogReader | None, pool: asyncpg.Pool, *, derive_steps: bool) -> None:
        # None: the sink is `none` (no written documents).
        self._reader = reader
        self._pool = pool
        self._derived = (_STEPS, _CANCELLATION) if derive_steps else (_CANCELLATION,)

    async def find(self, query: LogQuery) -> list[LogDocument]:
        wanted = self._wanted(query)
        if not wanted:
            return [] if self._reader is None else await self._reader.find(query)
        assert query.run_id is not None
        written: list[LogDocument] = []
        if self._reader is not None:
            whole = dataclasses.replace(query, offset=0, limit=query.offset + query.limit)
            written = await self._reader.find(whole)
        derived: list[LogDocument] = []
        async with self._pool.acquire() as proxy:
            for moment in wanted:
                derived += await moment.read(cast(asyncpg.Connection, proxy), query.run_id)
        kept = [document for document in derived if _selected(query, document)]
        return merged(written, kept, query.offset, query.limit)

    def _wanted(self, query: LogQuery) -> list[_Derived]:
        """The derived moments the query may select: only a run's are derived."""
        if query.run_id is None:
            return []
        levels = query.levels()
        return [
            moment
            for moment in self._derived
            if (query.kinds is None or moment.kind in query.kinds)
            and (levels is None or moment.level in levels)
        ]


def _selected(query: LogQuery, document: LogDocument) -> bool:
    at = document.timestamp
    if query.event_name is not None and document.event_name != query.event_name:
        return False
    if query.start is not None and at < query.start:
        return False
    if query.end is not None and at >= query.end:
        return False
    after = query.after
    return after is None or (at, document.id) > (after.timestamp, after.id)
