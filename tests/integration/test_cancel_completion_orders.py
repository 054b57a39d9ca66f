"""Cancel racing with completion, both orders forced: the test's own connection holds the
run's row lock while the completion and the cancel (`POST /runs/{id}/cancel`) are issued,
waits until both are blocked on it, in the order under test, then lets go. PostgreSQL
grants the row to its waiters in turn, so the interleaving is the one chosen, every time.
Whatever the order, the run ends in exactly one final state and what the user sees (the
cancel's answer, `GET /runs/{id}`, the steps) agrees with it."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import httpx
import pytest

from reverb_function_host import Host
from reverb_ingress_gateway import Gateway
from tests.e2e.processes import eventually
from tests.integration.test_run_cancellation import app, executed, gate, host
from tests.integration.two_workers import Two, two_workers

__all__ = ["host"]  # the function host of the cancellation tests' app, shared

# Each order is forced this many times.
REPEATS = 3


@pytest.fixture
async def two(database_url: str, connection: asyncpg.Connection, host: Host) -> AsyncIterator[Two]:
    async with two_workers(database_url, connection, app, host) as mesh:
        yield mesh


@pytest.fixture
async def client(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.http_port}") as http:
        yield http


class RowLock:
    """A run's row, locked FOR UPDATE by a connection of the test's own."""

    def __init__(self, pid: int, watcher: asyncpg.Connection) -> None:
        self._pid = pid
        self._watcher = watcher

    async def waiting(self, count: int, what: str) -> list[str]:
        """Once `count` statements wait for the lock (directly or behind another waiter):
        their texts, the longest waiting first."""

        async def enough() -> bool:
            return len(await self._blocked()) >= count

        await eventually(enough, within=10, what=what)
        return await self._blocked()

    async def _blocked(self) -> list[str]:
        # A second waiter for a row waits for the first one (its tuple lock), not for the
        # row's holder: follow the chain from this lock's holder.
        rows = await self._watcher.fetch(
            """
            WITH RECURSIVE chain(pid) AS (
                SELECT $1::int
                UNION
                SELECT a.pid FROM pg_stat_activity a, chain
                WHERE chain.pid = ANY(pg_blocking_pids(a.pid))
            )
            SELECT query FROM pg_stat_activity
            WHERE pid IN (SELECT pid FROM chain) AND pid <> $1
            ORDER BY query_start
            """,
            self._pid,
        )
        return [row["query"] for row in rows]


@asynccontextmanager
async def row_locked(
    database_url: str, watcher: asyncpg.Connection, run_id: str
) -> AsyncIterator[RowLock]:
    """Hold the run's row until the block ends (the transaction commits)."""
    locker = await asyncpg.connect(database_url)
    try:
        async with locker.transaction():
            await locker.execute("SELECT 1 FROM reverb.runs WHERE id = $1 FOR UPDATE", run_id)
            yield RowLock(await locker.fetchval("SELECT pg_backend_pid()"), watcher)
    finally:
        await locker.close()


def completes(statement: str) -> bool:
    """Whether a statement is a run's completion (the batched one or `complete_run`)."""
    return "status = 'completed'" in statement


async def held_in_its_first_step(two: Two) -> str:
    event_id = await two.mesh.send("test.two-steps", {})
    run_id = await two.run_id(event_id, "two-steps")
    await asyncio.wait_for(gate.entered(run_id).wait(), 10)
    return run_id


async def shown_once_let_go(two: Two, client: httpx.AsyncClient, run_id: str) -> dict[str, object]:
    """`GET /runs/{id}` once no job drives the run any more."""

    async def let_go() -> bool:
        job = await two.connection.fetchval("SELECT job_id FROM reverb.runs WHERE id = $1", run_id)
        return job is None

    await eventually(let_go, within=10, what="the run's job to let it go")
    shown: dict[str, object] = (await client.get(f"/runs/{run_id}")).json()
    return shown


def steps_of(shown: dict[str, object]) -> list[tuple[str, str]]:
    steps = shown["steps"]
    assert isinstance(steps, list)
    return [(step["id"], step["status"]) for step in steps]


async def test_the_completion_granted_the_row_first_wins_and_the_cancel_answers_409(
    two: Two, client: httpx.AsyncClient, database_url: str
) -> None:
    for _ in range(REPEATS):
        run_id = await held_in_its_first_step(two)
        async with row_locked(database_url, two.connection, run_id) as lock:
            gate.released(run_id).set()  # both steps run, then the completion waits
            (first,) = await lock.waiting(1, "the completion to wait for the row")
            assert completes(first), first
            cancel = asyncio.create_task(client.post(f"/runs/{run_id}/cancel"))
            await lock.waiting(2, "the cancel to wait behind the completion")
        answer = await cancel

        assert answer.status_code == 409, answer.text
        assert answer.json()["error"]["code"] == "failed_precondition"
        shown = await shown_once_let_go(two, client, run_id)
        assert (shown["status"], shown["output"], shown.get("cancelled_by")) == (
            "completed",
            "second done",
            None,
        )
        assert steps_of(shown) == [("first", "completed"), ("second", "completed")]
        assert executed[f"{run_id}:second"] == 1


async def test_the_cancel_granted_the_row_first_wins_and_the_completion_changes_nothing(
    two: Two, client: httpx.AsyncClient, database_url: str
) -> None:
    for _ in range(REPEATS):
        run_id = await held_in_its_first_step(two)
        async with row_locked(database_url, two.connection, run_id) as lock:
            cancel = asyncio.create_task(client.post(f"/runs/{run_id}/cancel"))
            (first,) = await lock.waiting(1, "the cancel to wait for the row")
            assert not completes(first), first
            # Steps take no run lock: both run, then the completion waits behind the cancel.
            gate.released(run_id).set()
            both = await lock.waiting(2, "the completion to wait behind the cancel")
            assert [completes(statement) for statement in both] == [False, True], both
        answer = await cancel

        assert answer.status_code == 200, answer.text
        assert answer.json()["status"] == "cancelled"
        shown = await shown_once_let_go(two, client, run_id)
        assert (shown["status"], shown["output"], shown.get("cancelled_by")) == (
            "cancelled",
            None,
            None,  # cancelled through the API, not by an event
        )
        error = shown["error"]
        assert isinstance(error, dict) and error["type"] == "RunCancelled"
        # Both steps started before the cancel committed: each ran once and kept its output;
        # the completion that lost changed nothing.
        assert steps_of(shown) == [("first", "completed"), ("second", "completed")]
        assert executed[f"{run_id}:second"] == 1
