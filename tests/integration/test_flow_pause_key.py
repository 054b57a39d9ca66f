"""`RetryAfterError(delay, pause_key=True)` holds back the whole concurrency key of the run
that raised it, not only that run: one 429 from a partner API pauses the tenant. Other
keys go on. Two real workers, a real host registered through the gateway."""

from datetime import timedelta

import asyncpg
import pytest

import reverb
from reverb import Context, event
from tests.e2e.processes import eventually
from tests.integration.flow import flow_mesh

app = reverb.App("flow-pause-key")
PAUSE = timedelta(milliseconds=1500)
refused: set[str] = set()


async def call_partner(tenant: str, n: int) -> str:
    # The partner answers 429 to the tenant's first call, once.
    if n == 0 and tenant not in refused:
        refused.add(tenant)
        raise reverb.RetryAfterError(PAUSE, "429 Too Many Requests", pause_key=True)
    return f"{tenant}-{n}"


@app.function(
    "polite",
    trigger=event("flow.partner"),
    concurrency=reverb.Concurrency(limit=5, key="event.data.tenant"),
)
async def polite(ctx: Context) -> str:
    data = ctx.event.data
    return str(await ctx.step.run("call", call_partner, data["tenant"], data["n"]))


@pytest.fixture(autouse=True)
def fresh() -> None:
    refused.clear()


@pytest.mark.timeout(120)
async def test_a_retry_after_with_pause_key_holds_every_run_of_the_key_until_it_passes(
    database_url: str, connection: asyncpg.Connection
) -> None:
    async with flow_mesh(database_url, connection, app) as mesh:
        await mesh.send("flow.partner", [{"tenant": "a", "n": 0}])

        async def paused() -> bool:
            return bool(
                await connection.fetchval(
                    "SELECT paused_until > now() FROM reverb.concurrency_keys"
                    " WHERE key LIKE '%\"a\"'"
                )
            )

        await eventually(paused, within=20, what="tenant a's key to be paused")
        paused_until = await connection.fetchval(
            "SELECT paused_until FROM reverb.concurrency_keys WHERE key LIKE '%\"a\"'"
        )
        (held_event, other_event) = await mesh.send(
            "flow.partner", [{"tenant": "a", "n": 1}, {"tenant": "b", "n": 1}]
        )
        other, held = await mesh.run_of(other_event), await mesh.run_of(held_event)

        async def other_done() -> bool:
            shown = (await mesh.http.get(f"/runs/{other}")).json()
            return bool(shown["status"] == "completed")

        # Another tenant is not held back.
        await eventually(other_done, within=20, what="tenant b's run to complete")

        async def held_paused() -> bool:
            shown = (await mesh.http.get(f"/runs/{held}")).json()
            return bool(shown["waiting_on"] and shown["waiting_on"]["kind"] == "paused")

        # Tenant a's new run is held, queued, on the pause, until its end.
        await eventually(held_paused, within=20, what="tenant a's run to be held paused")
        shown = (await mesh.http.get(f"/runs/{held}")).json()
        assert shown["status"] == "queued"
        assert shown["waiting_on"]["until"] is not None

        await mesh.all_ended("polite", 3, within=60)
        runs = await mesh.runs("polite")
        assert {run["status"] for run in runs} == {"completed"}
        # Tenant a's new run started no step before the pause had passed, and the run
        # that raised was retried after it too.
        starts = await connection.fetch(
            "SELECT r.id, s.started_at FROM reverb.steps s JOIN reverb.runs r ON r.id = s.run_id"
            " WHERE r.function_id = 'polite' AND r.id = $1",
            held,
        )
        assert starts and all(row["started_at"] >= paused_until for row in starts)
