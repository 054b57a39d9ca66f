"""Keeping the queue's tables small: a periodic `VACUUM (ANALYZE)` of the tables whose rows
live for seconds (pgqueuer's queue and the run wake-ups).

Every job is inserted, updated when picked and deleted when done, so the queue table
holds a few live rows and, between vacuums, every dead one since: at a few hundred steps
a second that is tens of thousands of dead rows a minute, and autovacuum wakes once a
minute by default (never, on a server with it off). pgqueuer's dequeue reads them all:
its search for stale picked jobs is a bitmap scan of `pgqueuer_picked_heartbeat_idx`,
which keeps every dead entry (a bitmap scan never marks them dead, as an index scan
would) and visits their heap pages. Measured in the waits bench, autovacuum off: 82,661
dead entries, 3,399 heap blocks a dequeue; 6 after a VACUUM (docs/architecture.md,
"Queue upkeep"). ANALYZE gives the planner the tables' real size, which its generic
plans of the queue's prepared statements depend on.

One worker of a deployment vacuums at a time (a session-level advisory lock, tried, never
waited for); VACUUM cannot run in a transaction, so the lock is a session's. A role that
does not own the tables gets PostgreSQL's warning for each and nothing is vacuumed: run
the workers as the role that ran the migrations.
"""

import asyncpg

from reverb_store.jobs.queue import QUEUE_TABLE

# The tables vacuumed, in this order.
TABLES = (QUEUE_TABLE, "reverb.run_wakeups")

_TRY_LOCK = "SELECT pg_try_advisory_lock(hashtextextended('reverb.queue_upkeep', 0))"
_UNLOCK = "SELECT pg_advisory_unlock(hashtextextended('reverb.queue_upkeep', 0))"
_VACUUM = f"VACUUM (ANALYZE) {', '.join(TABLES)}"


async def vacuum_queue(connection: asyncpg.Connection) -> bool:
    """VACUUM (ANALYZE) the queue's tables on `connection` (not in a transaction); False,
    doing nothing, while another connection does it."""
    if not await connection.fetchval(_TRY_LOCK):
        return False
    try:
        await connection.execute(_VACUUM)
    finally:
        await connection.fetchval(_UNLOCK)
    return True
