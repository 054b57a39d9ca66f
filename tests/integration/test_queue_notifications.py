"""What a job's insert notifies, against real PostgreSQL: a job due at once is announced
on Reverb's channel, where every worker takes due jobs itself, and never on pgqueuer's,
whose dequeue loop would then dequeue and probe the queue again for a job already taken."""

import asyncio
from datetime import timedelta

import asyncpg
from pgqueuer.domain.settings import db_settings

from reverb_store import jobs
from reverb_store.jobs import AdvanceRun
from tests.integration.wakeups import Heard

Notice = tuple[str, str]


async def test_a_due_job_is_announced_to_the_workers_own_takes_and_not_to_pgqueuer(
    connection: asyncpg.Connection, database_url: str
) -> None:
    pgqueuer_channel = db_settings().channel
    listener = await asyncpg.connect(database_url)
    heard: asyncio.Queue[Notice] = asyncio.Queue()

    def record(_connection: object, _pid: int, channel: str, payload: object) -> None:
        heard.put_nowait((channel, str(payload)))

    await listener.add_listener(jobs.CHANNEL, record)
    await listener.add_listener(pgqueuer_channel, record)
    try:
        await jobs.schedule(connection, [AdvanceRun("later")], [timedelta(minutes=5)], Heard())
        await jobs.enqueue(connection, [AdvanceRun("due")])
        # Notifications reach a listener in commit order: had either insert notified
        # pgqueuer's channel, it would be heard before this.
        await connection.execute("SELECT pg_notify($1, 'marker')", pgqueuer_channel)

        first = await asyncio.wait_for(heard.get(), timeout=5)
        second = await asyncio.wait_for(heard.get(), timeout=5)
    finally:
        await listener.close()

    assert [first, second] == [(jobs.CHANNEL, ""), (pgqueuer_channel, "marker")]
