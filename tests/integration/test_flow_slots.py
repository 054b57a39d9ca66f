"""The concurrency gate's takes and frees on real PostgreSQL, one transaction at a time:
takes of one key do not wait for each other's commits, a full key admits no one, and a
free hands its slot to the first waiter in rank order, with a wake-up due now (picked
for the freeing worker when it has room)."""

import asyncio
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import asyncpg

from reverb_store import new_id
from reverb_store.execution.gates import ADMIT, Candidate, Freed, Handover, Hold
from reverb_store.flow.concurrency import ConcurrencyGate
from reverb_store.flow.options import ConcurrencyLimit, FlowOptions
from reverb_store.ids import AppId, FunctionId, RunId
from tests.e2e.processes import eventually
from tests.integration.test_lock_order import ended, waiting


def _flow(limit: int) -> FlowOptions:
    return FlowOptions(concurrency=(ConcurrencyLimit(limit),))


async def _runs(connection: asyncpg.Connection, count: int) -> list[RunId]:
    """Runs created a second apart (their rank order), queued and driven by no job."""
    now = datetime.now(UTC)
    ids = [RunId(new_id()) for _ in range(count)]
    for index, run_id in enumerate(ids):
        await connection.execute(
            "INSERT INTO reverb.runs (id, function_id, app_id, status, max_attempts, gated,"
            " created_at) VALUES ($1, 'f', 'a', 'queued', 1, true, $2)",
            run_id,
            now + timedelta(seconds=index),
        )
    return ids


def _candidate(run_id: RunId, limit: int) -> Candidate:
    return Candidate(run_id, FunctionId("f"), AppId("a"), "queued", 0, 0, _flow(limit))


def _freed(run_id: RunId, limit: int) -> Freed:
    return Freed(run_id, FunctionId("f"), AppId("a"), "completed", _flow(limit))


async def _admit(
    connection: asyncpg.Connection, gate: ConcurrencyGate, run_id: RunId, limit: int
) -> None:
    """The run admitted and running, as the claim leaves it."""
    async with connection.transaction():
        assert await gate.decide(connection, _candidate(run_id, limit)) == ADMIT
        await connection.execute("UPDATE reverb.runs SET status = 'running' WHERE id = $1", run_id)


async def test_takes_of_one_key_do_not_wait_for_each_others_commits(
    database_url: str, connection: asyncpg.Connection
) -> None:
    gate = ConcurrencyGate()
    first, second, third = await _runs(connection, 3)
    await _admit(connection, gate, first, 1_000_000)  # the key's shards are made
    other = await asyncpg.connect(database_url)
    try:
        async with connection.transaction():
            assert await gate.decide(connection, _candidate(second, 1_000_000)) == ADMIT
            # The first take has not committed: the second does not wait for it.
            async with other.transaction():
                verdict = await asyncio.wait_for(
                    gate.decide(other, _candidate(third, 1_000_000)), timeout=5
                )
                assert verdict == ADMIT
    finally:
        await other.close()
    assert await connection.fetchval("SELECT count(*) FROM reverb.concurrency_slots") == 3
    assert await connection.fetchval("SELECT sum(used) FROM reverb.concurrency_shards") == 3


async def test_a_full_key_holds_and_a_free_hands_the_slot_to_the_first_waiter(
    connection: asyncpg.Connection,
) -> None:
    gate = ConcurrencyGate()
    a, b, c, d = await _runs(connection, 4)
    await _admit(connection, gate, a, 2)
    await _admit(connection, gate, b, 2)
    # d is held first, c second: c ranks first all the same (created earlier).
    for run_id in (d, c):
        async with connection.transaction():
            assert await gate.decide(connection, _candidate(run_id, 2)) == Hold("concurrency")
    assert await connection.fetchval("SELECT count(*) FROM reverb.concurrency_slots") == 2

    async with connection.transaction():
        await connection.execute("UPDATE reverb.runs SET status = 'completed' WHERE id = $1", a)
        await gate.freed(connection, _freed(a, 2))
    holders = await connection.fetch("SELECT run_id FROM reverb.concurrency_slots ORDER BY run_id")
    assert sorted(row["run_id"] for row in holders) == sorted([b, c])
    queued = await connection.fetch("SELECT run_id FROM reverb.concurrency_queue")
    assert [row["run_id"] for row in queued] == [d]
    # c was woken with a wake-up due now; the slot count did not move.
    woken = await connection.fetch(
        "SELECT entrypoint, execute_after <= now() AS due FROM pgqueuer"
        " WHERE convert_from(payload, 'UTF8')::jsonb->>'run_id' = $1",
        c,
    )
    assert [(row["entrypoint"], row["due"]) for row in woken] == [("wake_run", True)]
    assert await connection.fetchval("SELECT sum(used) FROM reverb.concurrency_shards") == 2

    # c's claim finds the slot its own; d is still held.
    await _admit(connection, gate, c, 2)
    async with connection.transaction():
        assert await gate.decide(connection, _candidate(d, 2)) == Hold("concurrency")
    assert await connection.fetchval("SELECT sum(used) FROM reverb.concurrency_shards") == 2

    # b's free hands its slot to d; c's finds nobody waiting: counted off, the mark cleared.
    for run_id in (b, c):
        async with connection.transaction():
            await connection.execute(
                "UPDATE reverb.runs SET status = 'completed' WHERE id = $1", run_id
            )
            await gate.freed(connection, _freed(run_id, 2))
    await _admit(connection, gate, d, 2)
    async with connection.transaction():
        await connection.execute("UPDATE reverb.runs SET status = 'completed' WHERE id = $1", d)
        await gate.freed(connection, _freed(d, 2))
    assert await connection.fetchval("SELECT count(*) FROM reverb.concurrency_slots") == 0
    assert await connection.fetchval("SELECT count(*) FROM reverb.concurrency_queue") == 0
    shards = await connection.fetchrow(
        "SELECT sum(used) AS used, bool_or(waiters) AS waiters FROM reverb.concurrency_shards"
    )
    assert shards is not None
    assert (shards["used"], shards["waiters"]) == (0, False)


async def test_a_free_with_a_handover_picks_the_first_waiters_job_for_the_freeing_worker(
    connection: asyncpg.Connection,
) -> None:
    gate = ConcurrencyGate()
    a, b, c, d = await _runs(connection, 4)
    await _admit(connection, gate, a, 1)
    for run_id in (b, c, d):
        async with connection.transaction():
            assert await gate.decide(connection, _candidate(run_id, 1)) == Hold("concurrency")
    worker = uuid4()
    booked: list[int] = []

    def book(wanted: int) -> int:
        booked.append(wanted)
        return wanted if len(booked) == 1 else 0  # room for one run, then none

    handover = Handover(worker, book)
    async with connection.transaction():
        await connection.execute("UPDATE reverb.runs SET status = 'completed' WHERE id = $1", a)
        await gate.freed_many(connection, [_freed(a, 1)], handover)
    # b got the slot, its job picked by the freeing worker: no notification, no dequeue.
    (handed,) = handover.runs
    assert handed.run_id == b
    job = await connection.fetchrow(
        "SELECT id, entrypoint, status, queue_manager_id FROM pgqueuer"
        " WHERE convert_from(payload, 'UTF8')::jsonb->>'run_id' = $1",
        b,
    )
    assert job is not None
    assert (job["id"], job["entrypoint"], job["status"]) == (handed.job_id, "wake_run", "picked")
    assert job["queue_manager_id"] == worker
    await _admit(connection, gate, b, 1)

    # Without room, the next waiter's wake-up is queued for any worker, as without one.
    handover = Handover(worker, book)
    async with connection.transaction():
        await connection.execute("UPDATE reverb.runs SET status = 'completed' WHERE id = $1", b)
        await gate.freed_many(connection, [_freed(b, 1)], handover)
    assert handover.runs == []
    job = await connection.fetchrow(
        "SELECT status, queue_manager_id FROM pgqueuer"
        " WHERE convert_from(payload, 'UTF8')::jsonb->>'run_id' = $1",
        c,
    )
    assert job is not None
    assert (job["status"], job["queue_manager_id"]) == ("queued", None)
    holders = await connection.fetch("SELECT run_id FROM reverb.concurrency_slots")
    assert [row["run_id"] for row in holders] == [c]
    assert await connection.fetchval("SELECT sum(used) FROM reverb.concurrency_shards") == 1


async def test_first_takes_of_a_new_key_wait_for_its_making_once_not_for_each_other(
    database_url: str, connection: asyncpg.Connection
) -> None:
    gate = ConcurrencyGate()
    first, second, third = await _runs(connection, 3)
    others = [await asyncpg.connect(database_url) for _ in range(2)]
    try:
        making = connection.transaction()
        await making.start()
        # The first take of the key makes its row and shards (not committed yet).
        assert await gate.decide(connection, _candidate(first, 1_000_000)) == ADMIT
        transactions = [other.transaction() for other in others]
        for transaction in transactions:
            await transaction.start()
        takes = [
            asyncio.create_task(gate.decide(other, _candidate(run_id, 1_000_000)))
            for other, run_id in zip(others, (second, third), strict=True)
        ]

        async def both_wait() -> bool:
            waiting = await connection.fetchval(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            return bool(waiting == 2)

        await eventually(both_wait, within=10, what="both takes waiting for the key")
        await making.commit()
        # Both go on once it is made, neither waiting for the other's commit.
        assert await asyncio.wait_for(asyncio.gather(*takes), timeout=5) == [ADMIT, ADMIT]
        for transaction in transactions:
            await transaction.commit()
    finally:
        for other in others:
            await other.close()
    assert await connection.fetchval("SELECT count(*) FROM reverb.concurrency_slots") == 3
    assert await connection.fetchval("SELECT sum(used) FROM reverb.concurrency_shards") == 3


async def test_a_take_that_waited_in_vain_holds_no_shard_into_the_locked_path(
    database_url: str, connection: asyncpg.Connection
) -> None:
    """A take waits for a shard with room that another take holds; that take fills it.
    The waiter goes on into the locked path (the key's row, then its shards) while
    another transaction holds the key's row and locks the shards: neither may wait
    for the other (PostgreSQL keeps the lock of a row its recheck passed over)."""
    gate = ConcurrencyGate()
    first, second, third = await _runs(connection, 3)
    await _admit(connection, gate, first, 1)  # the key's row and its one shard are made
    async with connection.transaction():
        await connection.execute("UPDATE reverb.runs SET status = 'completed' WHERE id = $1", first)
        await gate.freed(connection, _freed(first, 1))
    key = await connection.fetchval("SELECT key FROM reverb.concurrency_keys")
    taker, waiter, locker = [await asyncpg.connect(database_url) for _ in range(3)]
    try:
        for session in (waiter, locker):
            # A deadlock, if there is one, is found at once rather than after a second.
            await session.execute("SET deadlock_timeout = '10ms'")
        taking, waiting_take, locking = (
            session.transaction() for session in (taker, waiter, locker)
        )
        await taking.start()
        assert await gate.decide(taker, _candidate(second, 1)) == ADMIT
        await taker.execute("UPDATE reverb.runs SET status = 'running' WHERE id = $1", second)
        await waiting_take.start()
        take = asyncio.create_task(ended(gate.decide(waiter, _candidate(third, 1))))
        await waiting(connection, waiter, take)  # for the taker's shard
        await locking.start()
        await locker.execute("SELECT FROM reverb.concurrency_keys WHERE key = $1 FOR UPDATE", key)
        await taking.commit()  # the shard is full now
        await waiting(connection, waiter, take, not_on=[taker.get_server_pid()])  # the key
        shards = await ended(
            locker.execute(
                "SELECT FROM reverb.concurrency_shards WHERE key = $1 ORDER BY shard FOR UPDATE",
                key,
            )
        )
        assert not isinstance(shards, BaseException), shards
        await locking.commit()
        assert await take == Hold("concurrency")
        await waiting_take.commit()
    finally:
        for session in (taker, waiter, locker):
            await session.close()
    queued = await connection.fetch("SELECT run_id FROM reverb.concurrency_queue")
    assert [row["run_id"] for row in queued] == [third]
