"""Debounce: the last event of a quiet period starts the run; the events it supersedes are
skipped (`debounced`); `timeout` caps the wait from the first event.

Two workers, a host registered through the gateway, events over HTTP. A window of an hour
ends when the test says so (`end_now`); one test waits for a short window in real time.
"""

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime

import asyncpg
import pytest

import reverb
from reverb import Context, event
from reverb_ingress_gateway import Gateway
from reverb_store import jobs
from tests.integration.arrivals import Deployment, deploy, output

app = reverb.App("debounce-tests")


@app.function(
    "reindex",
    trigger=event("doc.edited"),
    debounce=reverb.Debounce(period="1h", key="event.data.doc", timeout="3h"),
)
async def reindex(ctx: Context) -> object:
    return [e.id for e in ctx.events]


@app.function("quick", trigger=event("doc.saved"), debounce=reverb.Debounce(period="2s"))
async def quick(ctx: Context) -> object:
    return ctx.event.data["n"]


@pytest.fixture
async def deployment(
    gateway: Gateway, database_url: str, connection: asyncpg.Connection
) -> AsyncIterator[Deployment]:
    async for running in deploy(app, gateway, database_url, connection):
        yield running


async def window_run(deployment: Deployment, doc: str, event_id: str) -> str:
    """The run of the key's open window, once `event_id` (fanned out) is its event."""
    query = (
        "SELECT run_id FROM reverb.debounces"
        " WHERE function_id = 'reindex' AND key = $1 AND event_id = $2"
    )
    await deployment.until(
        lambda: deployment.connection.fetchval(query, f'"{doc}"', event_id),
        what=f"{event_id} to be the event of the window of {doc!r}",
    )
    run_id: str = await deployment.connection.fetchval(query, f'"{doc}"', event_id)
    return run_id


async def test_the_last_event_of_a_window_starts_the_one_run(deployment: Deployment) -> None:
    edits = [await deployment.send("doc.edited", {"doc": "a", "n": n}) for n in range(3)]
    other = await deployment.send("doc.edited", {"doc": "b", "n": 0})
    run_id = await window_run(deployment, "a", edits[-1])
    for edit in edits[:-1]:
        await deployment.until_skipped(edit)

    # Held while the window is open: queued, never started, only its delayed wake-up.
    [held] = [run for run in await deployment.runs("reindex") if run["id"] == run_id]
    assert (held["status"], held["started_at"], held["invocations"]) == ("queued", None, 0)
    assert await deployment.jobs_of(run_id) >= 1
    # It says so, until the window's end, which the last edit moved on.
    due = await deployment.connection.fetchval(
        "SELECT due_at FROM reverb.debounces WHERE run_id = $1", run_id
    )
    waiting, line = await deployment.waiting_on(run_id)
    assert waiting is not None and waiting["kind"] == "debounce"
    assert datetime.fromisoformat(waiting["until"]) == due
    assert line.startswith("waiting   on debounce until ")
    assert [await deployment.skipped(edit) for edit in edits] == [
        [("reindex", "debounced")],
        [("reindex", "debounced")],
        [],
    ]

    await deployment.end_now("debounces", run_id)
    await deployment.end_now("debounces", await window_run(deployment, "b", other))

    runs = await deployment.finished("reindex", count=2)
    assert sorted(output(run) for run in runs) == sorted([[edits[-1]], [other]])
    assert await deployment.connection.fetchval("SELECT count(*) FROM reverb.debounces") == 0


async def test_an_event_after_the_window_closed_opens_a_new_one(deployment: Deployment) -> None:
    first = await deployment.send("doc.edited", {"doc": "a"})
    await deployment.end_now("debounces", await window_run(deployment, "a", first))
    await deployment.finished("reindex")

    later = await deployment.send("doc.edited", {"doc": "a"})
    await deployment.end_now("debounces", await window_run(deployment, "a", later))

    runs = await deployment.finished("reindex", count=2)
    assert [output(run) for run in runs] == [[first], [later]]


async def test_the_timeout_caps_the_wait_from_the_first_event(deployment: Deployment) -> None:
    first = await deployment.send("doc.edited", {"doc": "a"})
    run_id = await window_run(deployment, "a", first)
    # Three hours pass since the window opened (the clock the test drives): the next
    # event cannot move the window's end past the timeout.
    await deployment.connection.execute(
        "UPDATE reverb.debounces SET started_at = now() - interval '3 hours'"
    )
    last = await deployment.send("doc.edited", {"doc": "a"})
    assert await window_run(deployment, "a", last) == run_id
    assert await deployment.connection.fetchval(
        "SELECT due_at <= now() FROM reverb.debounces WHERE run_id = $1", run_id
    )
    # Its wake-up (due at the first period's end, an hour on) comes now.
    await jobs.enqueue(deployment.connection, [jobs.AdvanceRun(run_id)])

    [run] = await deployment.finished("reindex")
    assert output(run) == [last]


# The event is a window's event, skipped, or the event of a run.
_HANDLED = """
SELECT EXISTS (SELECT FROM reverb.debounces WHERE event_id = $1)
    OR EXISTS (SELECT FROM reverb.event_skips WHERE event_id = $1)
    OR EXISTS (SELECT FROM reverb.runs WHERE event_ids @> ARRAY[$1::text])
"""


async def test_events_at_the_edge_of_the_window_are_never_lost(deployment: Deployment) -> None:
    """The window ends (its run is claimed) while events of its key arrive: each event is
    the event of exactly one run or skipped as debounced, and every window starts its run."""
    sent = []
    for round_ in range(15):
        sent.append(await deployment.send("doc.edited", {"doc": "edge", "n": round_}))
        await deployment.until(
            lambda: deployment.connection.fetchval(_HANDLED, sent[-1]),
            what="the round's event to be fanned out",
        )
        run_id = await deployment.connection.fetchval(
            "SELECT run_id FROM reverb.debounces WHERE key = '\"edge\"'"
        )
        racing = await asyncio.gather(
            deployment.end_now("debounces", run_id) if run_id else asyncio.sleep(0),
            deployment.send("doc.edited", {"doc": "edge", "r": round_}),
            deployment.send("doc.edited", {"doc": "edge", "s": round_}),
        )
        sent.extend(event_id for event_id in racing if isinstance(event_id, str))

    async def fanned_out() -> bool:
        handled = [await deployment.connection.fetchval(_HANDLED, e) for e in sent]
        return all(handled)

    await deployment.until(fanned_out, what="every event to be fanned out")

    async def settled() -> bool:
        open_window = await deployment.connection.fetchval(
            "SELECT run_id FROM reverb.debounces WHERE key = '\"edge\"'"
        )
        if open_window is not None:
            await deployment.end_now("debounces", open_window)
            return False
        runs = await deployment.runs("reindex")
        return all(run["status"] == "completed" for run in runs)

    await deployment.until(settled, what="every window to start and finish its run")
    started = [event_id for run in await deployment.runs("reindex") for event_id in output(run)]
    skipped = [
        event_id
        for event_id in sent
        if await deployment.skipped(event_id) == [("reindex", "debounced")]
    ]
    assert sorted(started + skipped) == sorted(sent)
    assert len(set(started)) == len(started)


async def test_a_short_window_in_real_time(deployment: Deployment) -> None:
    for n in range(3):
        await deployment.send("doc.saved", {"n": n})

    [run] = await deployment.finished("quick")
    assert (run["status"], output(run)) == ("completed", 2)
