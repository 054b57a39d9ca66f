"""What the logs API reads: the sink's documents, with a run's step completions from
reverb.steps when they are not written (`steps`)."""

import dataclasses
from typing import cast

import asyncpg

from reverb_store.logs.documents import LogDocument
from reverb_store.logs.queries import LogQuery, LogReader
from reverb_store.logs.steps import completed_steps, merged


class LogViews:
    def __init__(self, reader: LogReader | None, pool: asyncpg.Pool, *, derive_steps: bool) -> None:
        # None: the sink is `none` (no written documents).
        self._reader = reader
        self._pool = pool
        self._derive_steps = derive_steps

    async def find(self, query: LogQuery) -> list[LogDocument]:
        if not self._derives(query):
            return [] if self._reader is None else await self._reader.find(query)
        assert query.run_id is not None
        written: list[LogDocument] = []
        if self._reader is not None:
            whole = dataclasses.replace(query, offset=0, limit=query.offset + query.limit)
            written = await self._reader.find(whole)
        async with self._pool.acquire() as proxy:
            derived = await completed_steps(cast(asyncpg.Connection, proxy), query.run_id)
        kept = [document for document in derived if _selected(query, document)]
        return merged(written, kept, query.offset, query.limit)

    def _derives(self, query: LogQuery) -> bool:
        if not self._derive_steps or query.run_id is None:
            return False
        levels = query.levels()
        return query.kinds is None and (levels is None or "info" in levels)


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
