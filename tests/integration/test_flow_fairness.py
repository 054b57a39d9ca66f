"""One hot key never starves the others: with 1,000 runs of tenant A queued behind a
limit, tenant B's runs start within a few of A's slot turnovers. Two real workers."""

import asyncpg
import pytest

import reverb
from reverb import Context, event
from tests.integration.flow import flow_mesh

app = reverb.App("flow-fairness")


async def work(tenant: str) -> str:
    return tenant


@app.function(
    "per-tenant",
    trigger=event("flow.fair"),
    concurrency=reverb.Concurrency(limit=2, key="event.data.tenant"),
)
async def per_tenant(ctx: Context) -> str:
    return str(await ctx.step.run("work", work, ctx.event.data["tenant"]))


@pytest.mark.timeout(300)
async def test_a_hot_key_does_not_starve_another(
    database_url: str, connection: asyncpg.Connection
) -> None:
    async with flow_mesh(database_url, connection, app) as mesh:
        await mesh.send("flow.fair", [{"tenant": "a", "n": n} for n in range(1000)])
        await mesh.send("flow.fair", [{"tenant": "b", "n": n} for n in range(10)])
        await mesh.all_ended("per-tenant", 1010, within=240)

        steps = await connection.fetch(
            "SELECT e.data->>'tenant' AS tenant, s.started_at, s.ended_at FROM reverb.steps s"
            " JOIN reverb.runs r ON r.id = s.run_id JOIN reverb.events e ON e.id = r.event_ids[1]"
            " WHERE r.function_id = 'per-tenant'"
        )
        b_starts = sorted(row["started_at"] for row in steps if row["tenant"] == "b")
        a_ends = sorted(row["ended_at"] for row in steps if row["tenant"] == "a")
        assert len(b_starts) == 10 and len(a_ends) == 1000
        # A's turnovers (runs of A ended) before each of B's runs started.
        before = [sum(end < start for end in a_ends) for start in b_starts]
        # B's first run starts within a couple of A's turnovers (0 measured), and all ten
        # within B's own five turnovers plus a few of A's (13 measured): A's 1,000 queued
        # runs wait in their key's queue, without jobs, so nothing of theirs is ahead of B.
        assert before[0] <= 4, before
        assert before[-1] <= 40, before
