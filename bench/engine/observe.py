"""Watching the engine through its database: finished runs, the queue, commit counts.

The observer's own queries are transactions too; it counts them so that commit
deltas can leave them out.
"""

import asyncio
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

# pg_stat_database is flushed by a backend once it has been idle for up to 10 s
# (PGSTAT_IDLE_INTERVAL); waiting this long makes a snapshot complete.
STATS_FLUSH_SECONDS = 11.0

_FINISHED = """
SELECT count(*) AS finished, max(ended_at) AS last_ended
FROM reverb.runs
WHERE event_ids[1] = ANY($1::text[]) AND status IN ('completed', 'failed', 'cancelled')
"""


class Observer:
    def __init__(self, connection: asyncpg.Connection) -> None:
        self.connection = connection
        self.queries = 0

    @classmethod
    async def connect(cls, database_url: str) -> "Observer":
        return cls(await asyncpg.connect(database_url))

    async def close(self) -> None:
        await self.connection.close()

    async def fetch(self, query: str, *arguments: Any) -> list[asyncpg.Record]:
        self.queries += 1
        return list(await self.connection.fetch(query, *arguments))

    async def fetchval(self, query: str, *arguments: Any) -> Any:
        self.queries += 1
        return await self.connection.fetchval(query, *arguments)

    async def wait_finished(
        self, event_ids: Sequence[str], expected: int, within: float, interval: float = 0.1
    ) -> datetime:
        """Until `expected` runs triggered by `event_ids` have ended; the last one's end."""
        deadline = time.monotonic() + within
        while True:
            row = (await self.fetch(_FINISHED, list(event_ids)))[0]
            if row["finished"] >= expected:
                return row["last_ended"]  # type: ignore[no-any-return]
            if time.monotonic() > deadline:
                raise TimeoutError(f"{row['finished']} of {expected} runs ended in {within:.0f} s")
            await asyncio.sleep(interval)

    async def failed(self, event_ids: Sequence[str]) -> int:
        return int(
            await self.fetchval(
                "SELECT count(*) FROM reverb.runs WHERE event_ids[1] = ANY($1::text[])"
                " AND status <> 'completed'",
                list(event_ids),
            )
        )

    async def drain(self, within: float = 180) -> None:
        """Until the queue holds no job (the fan-outs and runs started earlier are done)."""
        deadline = time.monotonic() + within
        while await self.fetchval("SELECT count(*) FROM pgqueuer WHERE execute_after <= now()"):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the queue did not drain in {within:.0f} s")
            await asyncio.sleep(0.2)

    async def commits(self) -> int:
        return int(
            await self.fetchval(
                "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
            )
        )
