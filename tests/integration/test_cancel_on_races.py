"""cancel_on's races with the interleaving forced, as in `test_wait_races`: a run (and its
cancellation wait, made by the creation trigger) is created in a transaction the test
holds open, while the cancelling event is accepted and matched around its commit. The
promise: an event accepted after the commit of the run's creation always cancels it;
one accepted before the run's creation began never does. Each race is repeated many
times on real PostgreSQL, with the store's own fan-out, acceptance and matching."""

from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg
import orjson
import pytest

from reverb_store import NewEvent, execution, insert_events
from reverb_store.control import (
    AppDefinition,
    FunctionDefinition,
    HostLease,
    TriggerDefinition,
    register_app,
)
from reverb_store.execution.cancel_on import CancelCondition
from reverb_store.ids import EventId, RunId
from tests.integration.test_wait_races import blocked, match_jobs, started

ROUNDS = 25
CREATED = "race.order.created"
CANCELLED = "race.order.cancelled"


@pytest.fixture
async def others(database_url: str) -> AsyncIterator[list[asyncpg.Connection]]:
    """Four more connections: the creator of the run, the holder of a lock, the sender,
    the matcher."""
    connections = [await asyncpg.connect(database_url) for _ in range(4)]
    yield connections
    for connection in connections:
        await connection.close()


@pytest.fixture(autouse=True)
async def registered(connection: asyncpg.Connection) -> None:
    """A function on `race.order.created`, cancelled by `race.order.cancelled` of its
    order (registration adds the key to wait_keys: every such event gets a job)."""
    function = FunctionDefinition(
        id="fulfil",
        name="fulfil",
        retries=0,
        triggers=(TriggerDefinition(event=CREATED),),
        cancel_on=(CancelCondition(CANCELLED, "data.order_id"),),
    )
    app = AppDefinition(id="races", functions=(function,))
    await register_app(connection, app, HostLease("127.0.0.1:1", timedelta(seconds=30)))


async def accept(connection: asyncpg.Connection, name: str, order_id: int) -> EventId:
    data = orjson.dumps({"order_id": order_id}).decode()
    (event_id,) = await insert_events(connection, [NewEvent(name, data)])
    return EventId(event_id)


async def create_run(connection: asyncpg.Connection, trigger: EventId) -> RunId:
    """The trigger's fan-out (its `process_event` job's statement): one run of `fulfil`."""
    (created,) = await execution.create_runs(connection, [trigger], None)
    return created.run_id


async def status_of(connection: asyncpg.Connection, run_id: str) -> str:
    status: str = await connection.fetchval("SELECT status FROM reverb.runs WHERE id = $1", run_id)
    return status


async def cancelled_by(connection: asyncpg.Connection, run_id: str) -> str | None:
    found: str | None = await connection.fetchval(
        "SELECT event_id FROM reverb.event_cancellations WHERE run_id = $1", run_id
    )
    return found


async def test_an_event_accepted_as_the_run_commits_cancels_it(
    connection: asyncpg.Connection, others: list[asyncpg.Connection]
) -> None:
    """The event's acceptance starts while the run's creation is uncommitted (held on a
    lock of the events table) and ends after the creation's commit: its job sees the
    cancellation wait and cancels the run."""
    creator, holder, sender, matcher = others
    for round_ in range(ROUNDS):
        trigger = await accept(connection, CREATED, round_)
        async with holder.transaction():
            # Inserting the event needs ROW EXCLUSIVE on reverb.events: it blocks.
            await holder.execute("LOCK TABLE reverb.events IN SHARE MODE")
            async with creator.transaction():
                run_id = await create_run(creator, trigger)
                sending = await started(accept(sender, CANCELLED, round_))
                await blocked(connection, sender.get_server_pid(), "relation")
            # The run and its cancellation wait are committed; the event is not yet in.
        event_id = await sending
        assert await match_jobs(connection, event_id) == 1, f"round {round_}: no match job"
        matched = await execution.match_events(matcher, [event_id])
        assert matched.cancelled == [run_id], f"round {round_}: the event was missed"
        assert await status_of(connection, run_id) == "cancelled"
        assert await cancelled_by(connection, run_id) == event_id


async def test_an_event_accepted_while_the_run_is_created_cancels_it_once_committed(
    connection: asyncpg.Connection, others: list[asyncpg.Connection]
) -> None:
    """The event commits while the run's creation is still open: a job of it that runs
    before the creation's commit cannot see the run (nothing to cancel, nothing
    recorded); one that runs after does, and the event is not older than the run, so it
    cancels. A second event after the commit finds the run already cancelled."""
    creator, _, sender, matcher = others
    for round_ in range(ROUNDS):
        trigger = await accept(connection, CREATED, round_)
        async with creator.transaction():
            run_id = await create_run(creator, trigger)
            during = await accept(sender, CANCELLED, round_)
            early = await execution.match_events(matcher, [during])
            assert early.cancelled == [] and early.woken == []
        assert await status_of(connection, run_id) == "queued"
        # A job of the same event running after the commit (a slower worker's).
        late = await execution.match_events(matcher, [during])
        assert late.cancelled == [run_id], f"round {round_}: the event was missed"
        after = await accept(sender, CANCELLED, round_)
        assert (await execution.match_events(matcher, [after])).cancelled == []
        assert await cancelled_by(connection, run_id) == during


async def test_a_job_waiting_on_the_run_creation_cancels_it_after_the_commit(
    connection: asyncpg.Connection, others: list[asyncpg.Connection]
) -> None:
    """The run's creation commits while the event's job is between its reads: the job
    holds its key's lock and is blocked taking the runs' row locks, behind a holder of
    an older run that the same event cancels. The run created meanwhile is not among the
    job's candidates (read before the commit); the event's next job, like any event
    accepted after the commit, cancels it."""
    creator, holder, sender, matcher = others
    for round_ in range(ROUNDS):
        older = await create_run(connection, await accept(connection, CREATED, round_))
        trigger = await accept(connection, CREATED, round_)
        event_id = await accept(sender, CANCELLED, round_)
        async with holder.transaction():
            await holder.execute("SELECT FROM reverb.runs WHERE id = $1 FOR UPDATE", older)
            matching = await started(execution.match_events(matcher, [event_id]))
            await blocked(connection, matcher.get_server_pid(), "transactionid")
            async with creator.transaction():
                run_id = await create_run(creator, trigger)
        matched = await matching
        assert matched.cancelled == [older], f"round {round_}: {matched}"
        assert await status_of(connection, run_id) == "queued"
        after = await accept(sender, CANCELLED, round_)
        assert (await execution.match_events(matcher, [after])).cancelled == [run_id]
        assert await cancelled_by(connection, run_id) == after


async def test_an_event_accepted_before_the_creation_began_never_cancels_it(
    connection: asyncpg.Connection, others: list[asyncpg.Connection]
) -> None:
    """An event committed before the run's creation started, whose job runs only after
    the run's commit: the wait's `not_before` (the run's creation) keeps it out."""
    creator, _, sender, matcher = others
    for round_ in range(ROUNDS):
        trigger = await accept(connection, CREATED, round_)
        before = await accept(sender, CANCELLED, round_)
        async with creator.transaction():
            run_id = await create_run(creator, trigger)
        assert (await execution.match_events(matcher, [before])).cancelled == []
        assert await status_of(connection, run_id) == "queued"
        assert await cancelled_by(connection, run_id) is None
