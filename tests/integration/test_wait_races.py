"""Races between waits and events, with the interleaving forced: the test holds a lock the
racing transaction needs, waits until PostgreSQL shows that transaction blocked on it, lets
the other side act, then lets go. Each race is repeated many times on real PostgreSQL."""

import asyncio
from collections.abc import AsyncIterator, Awaitable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import asyncpg
import orjson
import pytest

from reverb_store import NewEvent, execution, insert_events
from reverb_store.execution import EventRecord, StepTiming, WaitCondition, WaitKeys, WaitRequest
from reverb_store.ids import EventId, FunctionId, RunId, StepId
from tests.e2e.processes import eventually
from tests.integration.test_worker_transitions import new_run

ROUNDS = 25
T = TypeVar("T")


async def blocked(watcher: asyncpg.Connection, pid: int, lock_type: str | None = None) -> None:
    """Until the backend `pid` waits on a lock (of `lock_type`, e.g. "advisory")."""

    async def waiting() -> bool:
        found: bool = await watcher.fetchval(
            "SELECT EXISTS (SELECT FROM pg_locks WHERE pid = $1 AND NOT granted"
            " AND ($2::text IS NULL OR locktype = $2))",
            pid,
            lock_type,
        )
        return found

    await eventually(waiting, within=10, what=f"backend {pid} to block on a lock")


async def started(task: Awaitable[T]) -> "asyncio.Task[T]":
    return asyncio.ensure_future(task)


@pytest.fixture
async def others(database_url: str) -> AsyncIterator[list[asyncpg.Connection]]:
    """Four more connections: the holder of the lock, the waiting run, the sender, the
    matcher."""
    connections = [await asyncpg.connect(database_url) for _ in range(4)]
    yield connections
    for connection in connections:
        await connection.close()


async def waiting_run(connection: asyncpg.Connection, order_id: int) -> tuple[RunId, EventRecord]:
    """A running run whose triggering event carries `order_id`."""
    run_id = await new_run(connection, "running")
    data = orjson.dumps({"order_id": order_id}).decode()
    (event_id,) = await insert_events(connection, [NewEvent("race.order.created", data)])
    await connection.execute(
        "UPDATE reverb.runs SET event_ids = ARRAY[$2] WHERE id = $1", run_id, event_id
    )
    trigger = EventRecord(EventId(event_id), "race.order.created", data, datetime.now(UTC))
    return run_id, trigger


async def paid(connection: asyncpg.Connection, order_id: int, name: str = "race.order.paid") -> str:
    data = orjson.dumps({"order_id": order_id}).decode()
    (event_id,) = await insert_events(connection, [NewEvent(name, data)])
    return event_id


async def step_of(connection: asyncpg.Connection, run_id: str) -> asyncpg.Record:
    row = await connection.fetchrow(
        "SELECT status, output FROM reverb.steps WHERE run_id = $1 AND id = 'wait'", run_id
    )
    assert row is not None
    return row


async def match_jobs(connection: asyncpg.Connection, event_id: str) -> int:
    count: int = await connection.fetchval(
        "SELECT count(*) FROM pgqueuer WHERE entrypoint = 'match_waits'"
        " AND convert_from(payload, 'utf8')::jsonb -> 'event_ids' ? $1",
        event_id,
    )
    return count


def record(
    connection: asyncpg.Connection,
    run_id: RunId,
    trigger: EventRecord,
    keys: WaitKeys,
    *conditions: WaitCondition,
    lookback: timedelta | None = None,
) -> Awaitable[execution.StepState]:
    return execution.record_wait(
        connection,
        run_id,
        FunctionId("f"),
        trigger,
        StepTiming(StepId("wait"), "wait", None, None),
        WaitRequest(conditions, timedelta(hours=1), lookback),
        keys,
    )


PAID = WaitCondition("race.order.paid", "data.order_id")


async def test_an_event_committed_after_the_look_back_but_before_the_wait_resolves_it(
    connection: asyncpg.Connection, others: list[asyncpg.Connection]
) -> None:
    """The worst moment for a wait with a lookback: its look back has found nothing, and
    the event commits before the wait's rows do. The event's match_waits job must wait
    for the wait's commit and then resolve it."""
    holder, waiter, sender, matcher = others
    keys = WaitKeys()
    # The key exists (a wait used it before), so acceptance never waits on wait_keys.
    first_run, first_trigger = await waiting_run(connection, -1)
    await record(connection, first_run, first_trigger, keys, PAID)
    for round_ in range(ROUNDS):
        run_id, trigger = await waiting_run(connection, round_)
        async with holder.transaction():
            # Inserting the wait's rows needs ROW EXCLUSIVE on reverb.waits: it blocks
            # after the look back, with the key's advisory lock held.
            await holder.execute("LOCK TABLE reverb.waits IN SHARE MODE")
            waiting = await started(
                record(waiter, run_id, trigger, keys, PAID, lookback=timedelta(minutes=5))
            )
            await blocked(connection, waiter.get_server_pid(), "relation")
            event_id = await paid(sender, round_)
            assert await match_jobs(connection, event_id) == 1
            matching = await started(execution.match_waits(matcher, [event_id]))
            await blocked(connection, matcher.get_server_pid(), "advisory")
        assert (await waiting).status == "waiting"
        # The wait committed before the matcher's lock was granted; it resolves the wait
        # (the run is still running: its suspension will see the step resolved).
        await matching
        step = await step_of(connection, run_id)
        assert step["status"] == "completed", f"round {round_}: the event was missed"
        assert orjson.loads(step["output"])["event"]["id"] == event_id


async def test_an_event_accepted_while_the_first_wait_of_its_key_commits_resolves_it(
    connection: asyncpg.Connection, others: list[asyncpg.Connection]
) -> None:
    """A wait without a lookback whose (event, match) key is new: an event accepted while
    the wait commits is held by the key's table lock, then sees the key, gets its
    match_waits job and resolves the wait (its acceptance ends after the wait's commit)."""
    holder, waiter, sender, matcher = others
    for round_ in range(ROUNDS):
        run_id, trigger = await waiting_run(connection, round_)
        # A new event name each round: every wait is the first of its key.
        name = f"race.order.paid.{round_}"
        condition = WaitCondition(name, "data.order_id")
        async with holder.transaction():
            await holder.execute("LOCK TABLE reverb.waits IN SHARE MODE")
            waiting = await started(record(waiter, run_id, trigger, WaitKeys(), condition))
            await blocked(connection, waiter.get_server_pid(), "relation")
            sending = await started(paid(sender, round_, name))
            # The accepting statement reads wait_keys, which the wait holds locked.
            await blocked(connection, sender.get_server_pid(), "relation")
        assert (await waiting).status == "waiting"
        event_id = await sending
        assert await match_jobs(connection, event_id) == 1, f"round {round_}: no match job"
        assert await execution.match_waits(matcher, [event_id]) == []  # run still 'running'
        step = await step_of(connection, run_id)
        assert step["status"] == "completed", f"round {round_}: the event was missed"
        assert orjson.loads(step["output"])["event"]["id"] == event_id


async def test_two_events_at_once_resolve_a_wait_for_any_exactly_once(
    connection: asyncpg.Connection, others: list[asyncpg.Connection]
) -> None:
    """Two events, each meeting another condition of one wait_for_any, matched by two jobs
    at the same moment: exactly one wins, every row of the wait goes in the winner's
    transaction, and the run is queued once."""
    holder, first_matcher, second_matcher, _ = others
    keys = WaitKeys()
    cancelled = WaitCondition("race.order.cancelled", "data.order_id")
    winners = []
    for round_ in range(ROUNDS):
        run_id, trigger = await waiting_run(connection, round_)
        await record(connection, run_id, trigger, keys, PAID, cancelled)
        await connection.execute("UPDATE reverb.runs SET status = 'waiting' WHERE id = $1", run_id)
        paid_id = await paid(connection, round_)
        cancelled_id = await paid(connection, round_, "race.order.cancelled")
        async with holder.transaction():
            # Both jobs find their candidate, then queue on the run's row lock.
            await holder.execute("SELECT FROM reverb.runs WHERE id = $1 FOR UPDATE", run_id)
            order = [(first_matcher, paid_id), (second_matcher, cancelled_id)]
            if round_ % 2:
                order.reverse()
            tasks = []
            for matcher, event_id in order:
                tasks.append(await started(execution.match_waits(matcher, [event_id])))
                await blocked(connection, matcher.get_server_pid())
        woken = [await task for task in tasks]
        assert sorted(len(runs) for runs in woken) == [0, 1], f"round {round_}: {woken}"
        step = await step_of(connection, run_id)
        output = orjson.loads(step["output"])
        assert step["status"] == "completed"
        assert (output["index"], output["event"]["id"]) in {(0, paid_id), (1, cancelled_id)}
        winners.append(output["index"])
        assert (
            await connection.fetchval("SELECT count(*) FROM reverb.waits WHERE run_id = $1", run_id)
            == 0
        )
        assert (
            await connection.fetchval(
                "SELECT count(*) FROM pgqueuer WHERE entrypoint = 'advance_run'"
                " AND convert_from(payload, 'utf8')::jsonb ->> 'run_id' = $1",
                run_id,
            )
            == 1
        )
    # The job that took the row lock first won, whichever event it carried.
    assert set(winners) == {0, 1}
