"""Replaying runs: POST /runs/{id}/replay (from the start, from a step, with edited data) and
POST /runs/replay, over a real gateway, two workers, a real host and PostgreSQL."""

from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import grpc
import httpx
import pytest

import reverb
from reverb import Context, NonRetriableError, event
from reverb_contracts.v1 import ingress_pb2, ingress_pb2_grpc
from reverb_function_host import Host
from reverb_function_host import start as start_host
from reverb_ingress_gateway import Gateway
from reverb_queue_worker import Worker
from reverb_queue_worker import start as start_worker
from tests.e2e.processes import eventually
from tests.integration.test_worker_runs import host_settings, register, worker_settings

app = reverb.App("replay-tests")
calls: Counter[str] = Counter()


def reserve(run_id: str, amount: int) -> dict[str, object]:
    calls[f"reserve:{run_id}"] += 1
    return {"reserved": amount, "by": run_id}


def charge(run_id: str, data: dict[str, Any]) -> str:
    calls[f"charge:{run_id}"] += 1
    if data.get("decline"):
        raise NonRetriableError("card declined")
    return f"charged {data['amount']}"


@app.function("charge-card", trigger=event("replay.charge"), retries=0)
async def charge_card(ctx: Context) -> dict[str, object]:
    reserved = await ctx.step.run("reserve", reserve, ctx.run_id, ctx.event.data["amount"])
    charged = await ctx.step.run("charge", charge, ctx.run_id, ctx.event.data)
    return {"reserved": reserved, "charged": charged, "event": ctx.event.id}


@app.function("nap-then-echo", trigger=event("replay.nap"))
async def nap_then_echo(ctx: Context) -> object:
    await ctx.step.sleep("nap", "1h")
    return ctx.event.data


@dataclass
class Mesh:
    connection: asyncpg.Connection
    client: httpx.AsyncClient
    workers: list[Worker]

    async def send(self, name: str, data: dict[str, Any]) -> str:
        response = await self.client.post("/events", json={"name": name, "data": data})
        assert response.status_code == 202, response.text
        [event_id] = response.json()["ids"]
        return str(event_id)

    async def run_of(self, event_id: str, function_id: str) -> str:
        async def created() -> bool:
            return await self._run_id(event_id, function_id) is not None

        await eventually(created, within=10, what=f"a run of {function_id}")
        run_id = await self._run_id(event_id, function_id)
        assert run_id is not None
        return run_id

    async def _run_id(self, event_id: str, function_id: str) -> str | None:
        return await self.connection.fetchval(  # type: ignore[no-any-return]
            "SELECT id FROM reverb.runs WHERE event_ids[1] = $1 AND function_id = $2"
            " AND replay_of IS NULL",
            event_id,
            function_id,
        )

    async def ended(self, run_id: str, *statuses: str) -> dict[str, Any]:
        """GET /runs/{id} once the run is in one of `statuses` (completed or failed)."""
        wanted = statuses or ("completed", "failed")

        async def done() -> bool:
            status = await self.connection.fetchval(
                "SELECT status FROM reverb.runs WHERE id = $1", run_id
            )
            return status in wanted

        await eventually(done, within=15, what=f"run {run_id} to be {' or '.join(wanted)}")
        response = await self.client.get(f"/runs/{run_id}")
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    async def replay(self, run_id: str, **body: object) -> httpx.Response:
        return await self.client.post(f"/runs/{run_id}/replay", json=body)


@pytest.fixture(scope="module")
async def host() -> AsyncIterator[Host]:
    running = await start_host(app, host_settings(), register_app=False)
    yield running
    await running.stop(0)


@pytest.fixture
async def mesh(
    database_url: str, connection: asyncpg.Connection, host: Host, gateway: Gateway
) -> AsyncIterator[Mesh]:
    await register(connection, app, f"127.0.0.1:{host.port}")
    workers = [await start_worker(worker_settings(database_url)) for _ in range(2)]
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.http_port}") as client:
        yield Mesh(connection, client, workers)
    for worker in workers:
        await worker.stop()


async def test_a_failed_run_replays_on_the_same_event(mesh: Mesh) -> None:
    event_id = await mesh.send("replay.charge", {"amount": 5, "decline": True})
    failed = await mesh.ended(await mesh.run_of(event_id, "charge-card"))
    assert (failed["status"], failed["error"]["type"]) == ("failed", "StepError")

    # No body at all: a replay from the start on the same events.
    response = await mesh.client.post(f"/runs/{failed['id']}/replay")

    assert response.status_code == 202, response.text
    replay = await mesh.ended(response.json()["run_id"])
    assert replay["replay_of"] == failed["id"]
    assert replay["replay_from_step"] is None
    assert replay["event_ids"] == [event_id]
    # The same event, so the same outcome; every step ran again.
    assert replay["status"] == "failed"
    assert replay["error"]["message"].endswith("card declined")
    assert calls[f"reserve:{replay['id']}"] == 1
    assert calls[f"charge:{replay['id']}"] == 1
    # The event lists both runs it started.
    listed = (await mesh.client.get(f"/events/{event_id}")).json()["runs"]
    assert [run["id"] for run in listed] == [failed["id"], replay["id"]]


async def test_edited_data_goes_into_a_new_event_and_the_original_stays(mesh: Mesh) -> None:
    original = {"amount": 5, "decline": True}
    event_id = await mesh.send("replay.charge", original)
    failed = await mesh.ended(await mesh.run_of(event_id, "charge-card"))

    response = await mesh.replay(failed["id"], data={"amount": 7})

    assert response.status_code == 202, response.text
    replay = await mesh.ended(response.json()["run_id"])
    assert replay["status"] == "completed", replay
    [edited_id] = replay["event_ids"]
    assert edited_id != event_id
    assert replay["output"]["charged"] == "charged 7"
    assert replay["output"]["event"] == edited_id
    edited = (await mesh.client.get(f"/events/{edited_id}")).json()
    assert (edited["name"], edited["data"]) == ("replay.charge", {"amount": 7})
    # The edited event triggered nothing but the replay.
    assert [run["id"] for run in edited["runs"]] == [replay["id"]]
    kept = (await mesh.client.get(f"/events/{event_id}")).json()
    assert kept["data"] == original


async def test_a_replay_from_a_step_keeps_the_steps_before_it(mesh: Mesh) -> None:
    event_id = await mesh.send("replay.charge", {"amount": 9, "decline": True})
    failed = await mesh.ended(await mesh.run_of(event_id, "charge-card"))
    [reserved, declined] = failed["steps"]
    assert (reserved["id"], declined["id"], declined["status"]) == ("reserve", "charge", "failed")

    response = await mesh.replay(failed["id"], from_step="charge", data={"amount": 9})

    assert response.status_code == 202, response.text
    replay = await mesh.ended(response.json()["run_id"])
    assert replay["status"] == "completed", replay
    assert (replay["replay_of"], replay["replay_from_step"]) == (failed["id"], "charge")
    [kept, charged] = replay["steps"]
    # The kept step is listed with its old output, and was not run again.
    assert (kept["id"], kept["status"], kept["output"]) == (
        "reserve",
        "completed",
        reserved["output"],
    )
    assert kept["output"]["by"] == failed["id"]
    assert calls[f"reserve:{replay['id']}"] == 0
    assert (charged["id"], charged["output"]) == ("charge", "charged 9")
    assert calls[f"charge:{replay['id']}"] == 1
    assert replay["output"]["reserved"] == reserved["output"]


async def test_a_completed_run_replays_from_its_first_step(mesh: Mesh) -> None:
    event_id = await mesh.send("replay.charge", {"amount": 3})
    completed = await mesh.ended(await mesh.run_of(event_id, "charge-card"))
    assert completed["status"] == "completed"

    response = await mesh.replay(completed["id"], from_step="reserve")

    replay = await mesh.ended(response.json()["run_id"])
    assert replay["status"] == "completed"
    assert calls[f"reserve:{replay['id']}"] == 1
    assert replay["output"]["reserved"]["by"] == replay["id"]


async def test_refusals_are_clear_4xx(mesh: Mesh) -> None:
    event_id = await mesh.send("replay.nap", {"n": 1})
    napping = await mesh.run_of(event_id, "nap-then-echo")
    await mesh.ended(napping, "sleeping")
    done = await mesh.ended(
        await mesh.run_of(await mesh.send("replay.charge", {"amount": 1}), "charge-card")
    )

    in_flight = await mesh.replay(napping)
    assert in_flight.status_code == 409
    assert in_flight.json()["error"]["code"] == "failed_precondition"
    assert "sleeping" in in_flight.json()["error"]["message"]

    unknown_step = await mesh.replay(done["id"], from_step="refund")
    assert unknown_step.status_code == 400
    message = unknown_step.json()["error"]["message"]
    assert "'refund'" in message and "reserve, charge" in message

    missing = await mesh.replay("no-such-run")
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "not_found")
    for data in ([1], "text", 3):
        bad = await mesh.replay(done["id"], data=data)
        assert bad.status_code == 400, bad.text
    empty = await mesh.replay(done["id"], from_step="")
    assert empty.status_code == 400
    # Nothing was created by the refusals.
    replays = await mesh.connection.fetchval(
        "SELECT count(*) FROM reverb.runs WHERE replay_of IS NOT NULL"
    )
    assert replays == 0


async def test_bulk_replay_of_a_functions_failed_runs(mesh: Mesh) -> None:
    failed = []
    for amount in (1, 2, 3):
        event_id = await mesh.send("replay.charge", {"amount": amount, "decline": True})
        failed.append(await mesh.ended(await mesh.run_of(event_id, "charge-card")))
    ok = await mesh.ended(
        await mesh.run_of(await mesh.send("replay.charge", {"amount": 4}), "charge-card")
    )
    assert ok["status"] == "completed"
    # The first failure is older than the range.
    await mesh.connection.execute(
        "UPDATE reverb.runs SET created_at = created_at - interval '1 day' WHERE id = $1",
        failed[0]["id"],
    )
    since = (datetime.now(UTC) - timedelta(hours=1)).isoformat()

    response = await mesh.client.post(
        "/runs/replay", json={"function": "charge-card", "status": "failed", "from": since}
    )

    assert response.status_code == 202, response.text
    body = response.json()
    assert body["count"] == 2
    replays = [await mesh.ended(run_id) for run_id in body["run_ids"]]
    assert [replay["replay_of"] for replay in replays] == [failed[1]["id"], failed[2]["id"]]
    assert [replay["event_ids"] for replay in replays] == [
        failed[1]["event_ids"],
        failed[2]["event_ids"],
    ]
    # Unset status means failed; the replays failed again, so they count too now.
    again = await mesh.client.post("/runs/replay", json={"function": "charge-card"})
    assert again.json()["count"] == 5
    completed = await mesh.client.post(
        "/runs/replay", json={"function": "charge-card", "status": "completed", "to": since}
    )
    assert completed.json() == {"count": 0, "run_ids": []}


async def test_bad_bulk_replays_are_4xx(gateway: Gateway) -> None:
    refused = [
        ({}, 400, "invalid_argument"),
        ({"function": "charge-card", "status": "running"}, 400, "invalid_argument"),
        ({"function": "charge-card", "status": "nope"}, 400, "invalid_argument"),
        (
            {"function": "charge-card", "from": "2025-01-02T00:00:00Z", "to": "2025-01-01"},
            400,
            "invalid_argument",
        ),
        ({"function": "no-such-function"}, 404, "not_found"),
    ]
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.http_port}") as client:
        for body, status, code in refused:
            response = await client.post("/runs/replay", json=body)
            assert response.status_code == status, (body, response.text)
            assert response.json()["error"]["code"] == code, body


async def test_replays_over_grpc_name_their_precondition(mesh: Mesh, gateway: Gateway) -> None:
    napping = await mesh.run_of(await mesh.send("replay.nap", {"n": 2}), "nap-then-echo")
    await mesh.ended(napping, "sleeping")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.grpc_port}") as channel:
        stub = ingress_pb2_grpc.IngressStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.ReplayRun(ingress_pb2.ReplayRunRequest(id=napping))
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
