"""The rate-limit gate: at most `limit` runs per `period` (a sliding window), per key.

Only a run's first start counts. A run beyond the limit is skipped
(`Skip("rate_limited")`: it ends `cancelled`, RunSkipped, and its event lists it as
skipped). The key's row is locked while its window moves on (`arithmetic.rate_limit`,
PostgreSQL's clock). A run let through keeps its pass until it ends, so a run a later
gate holds is not counted twice.
"""

import asyncpg

from reverb_store.execution.gates import ADMIT, Candidate, Freed, FunctionRef, Skip, Verdict
from reverb_store.flow import arithmetic
from reverb_store.flow.keys import key, run_event
from reverb_store.flow.throttle import ENDED

NAME = "rate_limit"
REASON = "rate_limited"

_PASSED = "SELECT true FROM reverb.flow_passes WHERE run_id = $1 AND gate = $2"

_LOCK_KEY = """
INSERT INTO reverb.rate_limit_keys AS k (key, starts) VALUES ($1, '{}')
ON CONFLICT (key) DO UPDATE SET starts = k.starts
RETURNING starts, now() AS now
"""

_PASS = """
WITH moved AS (UPDATE reverb.rate_limit_keys SET starts = $2 WHERE key = $1)
INSERT INTO reverb.flow_passes (run_id, gate, at) VALUES ($3, $4, $5)
"""

_FORGET = "DELETE FROM reverb.flow_passes WHERE run_id = $1 AND gate = $2"


class RateLimitGate:
    """Skips runs beyond the function's rate limit (see the module)."""

    name = NAME

    def applies(self, function: FunctionRef) -> bool:
        return function.flow.rate_limit is not None

    async def decide(self, connection: asyncpg.Connection, candidate: Candidate) -> Verdict:
        rate_limit = candidate.flow.rate_limit
        if rate_limit is None or candidate.invocations > 0:
            return ADMIT
        if await connection.fetchval(_PASSED, candidate.run_id, NAME):
            return ADMIT
        event = await run_event(connection, candidate.run_id)
        what = f"function {candidate.function_id!r}: rate_limit.key"
        name = key(f"function:{candidate.function_id}", rate_limit.key, what, event)
        state = await connection.fetchrow(_LOCK_KEY, name)
        assert state is not None
        step = arithmetic.rate_limit(
            state["starts"], state["now"], limit=rate_limit.limit, period=rate_limit.period
        )
        if not step.allowed:
            return Skip(REASON)
        await connection.execute(
            _PASS, name, list(step.starts), candidate.run_id, NAME, state["now"]
        )
        return ADMIT

    async def freed(self, connection: asyncpg.Connection, run: Freed) -> None:
        if run.status in ENDED:
            await connection.execute(_FORGET, run.run_id, NAME)
