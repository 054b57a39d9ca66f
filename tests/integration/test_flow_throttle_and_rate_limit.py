"""Throttling delays starts (runs stay queued, none dropped); a rate limit skips the
runs beyond it. Two real workers, a real host registered through the gateway."""

from datetime import timedelta

import asyncpg
import orjson

import reverb
from reverb import Context, event
from tests.e2e.processes import eventually
from tests.integration.flow import flow_mesh

app = reverb.App("flow-throttle")
INTERVAL = timedelta(milliseconds=400)


def record(n: int) -> int:
    return n


@app.function(
    "throttled", trigger=event("flow.throttled"), throttle=reverb.Throttle(limit=5, period="2s")
)
async def throttled(ctx: Context) -> int:
    return int(await ctx.step.run("record", record, ctx.event.data["n"]))


@app.function(
    "rate-limited",
    trigger=event("flow.rated"),
    rate_limit=reverb.RateLimit(limit=2, period="1h", key="event.data.user"),
)
async def rate_limited(ctx: Context) -> int:
    return int(await ctx.step.run("record", record, ctx.event.data["n"]))


async def test_a_throttle_delays_starts_to_one_per_interval_and_drops_none(
    database_url: str, connection: asyncpg.Connection
) -> None:
    async with flow_mesh(database_url, connection, app) as mesh:
        await mesh.send("flow.throttled", [{"n": n} for n in range(6)])

        async def one_held() -> bool:
            rows = (await mesh.http.get("/runs", params={"function": "throttled"})).json()["runs"]
            for row in rows:
                shown = (await mesh.http.get(f"/runs/{row['id']}")).json()
                if shown["status"] == "queued" and shown["waiting_on"]:
                    assert shown["waiting_on"]["kind"] == "throttle"
                    assert shown["waiting_on"]["until"] is not None
                    return True
            return False

        await eventually(one_held, within=20, what="a run held by the throttle")
        await mesh.all_ended("throttled", 6)

        runs = await mesh.runs("throttled")
        assert sorted(orjson.loads(run["output"]) for run in runs) == list(range(6))
        # Each run started (was claimed, by PostgreSQL's clock) no sooner than its own
        # slot: the first's time plus period / limit for each run before it.
        starts = sorted(run["started_at"] for run in runs)
        for index, start in enumerate(starts):
            assert start - starts[0] >= index * INTERVAL


async def test_a_rate_limit_skips_the_runs_beyond_it_per_key(
    database_url: str, connection: asyncpg.Connection
) -> None:
    async with flow_mesh(database_url, connection, app) as mesh:
        await mesh.send("flow.rated", [{"user": "a", "n": n} for n in range(5)])
        await mesh.send("flow.rated", [{"user": "b", "n": 9}])
        await mesh.all_ended("rate-limited", 6)

        runs = await mesh.runs("rate-limited")
        by_status: dict[str, list[asyncpg.Record]] = {}
        for run in runs:
            by_status.setdefault(run["status"], []).append(run)
        assert len(by_status["completed"]) == 3
        assert len(by_status["cancelled"]) == 3
        outputs = {orjson.loads(run["output"]) for run in by_status["completed"]}
        assert 9 in outputs
        for run in by_status["cancelled"]:
            error = orjson.loads(run["error"])
            assert error["type"] == "RunSkipped"
            assert "rate_limited" in error["message"]
            assert run["started_at"] is None
