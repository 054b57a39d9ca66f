"""Watching the engine through its database: finished runs, the queue, commit counts.

The observer's own queries are transactions too; it counts them so that commit
deltas can leave them out.
"""

import asyncio
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

# pg_stat_database is flushed by a backend once it has been idle for up to 10 s
# (PGSTAT_IDLE_INTERVAL); waiting this long makes a snapshot complete.
STATS_FLUSH_SECONDS = 11.0

# Runs are found by function and by id (UUIDv7: ordered by creation time), which
# the runs_function index answers; matching thousands of event ids with = ANY($1)
# instead makes PostgreSQL compare every row with the whole array once the plan
# is generic (seconds per poll at 50,000 runs), which slows the engine down.
_FINISHED = """
SELECT count(*) AS finished, max(ended_at) AS last_ended
FROM reverb.runs
WHERE function_id = ANY($1::text[]) AND id >= $2
  AND status IN ('completed', 'failed', 'cancelled')
"""


@dataclass(frozen=True, slots=True)
class Scope:
    """The runs of some functions created from a moment on (one measurement's runs)."""

    function_ids: tuple[str, ...]
    # The smallest run id of that moment: UUIDv7 begins with the Unix milliseconds.
    since: str

    @classmethod
    def starting_now(cls, *function_ids: str) -> "Scope":
        # The engine's processes stamp ids with the same clock; a measurement starts
        # after the previous one's runs have all ended, so no earlier run is this late.
        milliseconds = time.time_ns() // 1_000_000
        return cls(function_ids, f"{milliseconds >> 16:08x}-{milliseconds & 0xFFFF:04x}")

    @property
    def arguments(self) -> tuple[list[str], str]:
        """The $1 (function ids) and $2 (smallest id) of a query that selects these runs."""
        return list(self.function_ids), self.since


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
        self, scope: Scope, expected: int, within: float, interval: float = 0.1
    ) -> datetime:
        """Until `expected` runs in `scope` have ended; the last one's end."""
        deadline = time.monotonic() + within
        while True:
            row = (await self.fetch(_FINISHED, *scope.arguments))[0]
            if row["finished"] >= expected:
                return row["last_ended"]  # type: ignore[no-any-return]
            if time.monotonic() > deadline:
                raise TimeoutError(f"{row['finished']} of {expected} runs ended in {within:.0f} s")
            await asyncio.sleep(interval)

    async def failed(self, scope: Scope) -> int:
        return int(
            await self.fetchval(
                "SELECT count(*) FROM reverb.runs WHERE function_id = ANY($1::text[])"
                " AND id >= $2 AND status <> 'completed'",
                *scope.arguments,
            )
        )

    async def invocations(self, scope: Scope) -> float:
        """Invocations per run, on average, in `scope`."""
        return float(
            await self.fetchval(
                "SELECT avg(invocations)::float8 FROM reverb.runs"
                " WHERE function_id = ANY($1::text[]) AND id >= $2",
                *scope.arguments,
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
