"""Prometheus metrics scraped over real HTTP from a gateway, a worker and a host (each with
REVERB_METRICS_ADDRESS set) after real runs: events accepted, runs started, completed and
failed by function, step durations, the queue's depth and the oldest due job's age, host
sessions, cron ticks fired and missed; and no endpoint at all when the address is unset."""

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from reverb_function_host import Host
from reverb_function_host import start as start_host
from reverb_ingress_gateway import Gateway, GatewaySettings
from reverb_ingress_gateway import start as start_gateway
from reverb_queue_worker import Worker
from reverb_queue_worker import start as start_worker
from reverb_store import control, jobs
from reverb_store.control import TriggerDefinition
from tests.e2e.processes import eventually
from tests.integration.test_cron_scheduler import LEASE, T0, DrivenClock, definition
from tests.integration.test_worker_hosts import wait_status
from tests.integration.test_worker_runs import app, host_settings, register, worker_settings

pytestmark = pytest.mark.timeout(60)

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(url: str) -> Samples:
    async with httpx.AsyncClient() as client:
        response = await client.get(url)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


@dataclass
class Mesh:
    gateway: Gateway
    worker: Worker
    host: Host
    http: httpx.AsyncClient

    async def send(self, name: str, data: object) -> str:
        response = await self.http.post("/events", json={"name": name, "data": data})
        assert response.status_code == 202, response.text
        (event_id,) = response.json()["ids"]
        return str(event_id)


@pytest.fixture
async def mesh(database_url: str, connection: asyncpg.Connection) -> AsyncIterator[Mesh]:
    metrics = "127.0.0.1:0"
    gateway = await start_gateway(
        GatewaySettings(
            database_url=database_url,
            http_address="127.0.0.1:0",
            ingress_address="127.0.0.1:0",
            dev=True,
            metrics_address=metrics,
        )
    )
    host = await start_host(app, host_settings(metrics_address=metrics), register_app=False)
    await register(connection, app, f"127.0.0.1:{host.port}")
    settings = worker_settings(database_url).model_copy(update={"metrics_address": metrics})
    worker = await start_worker(settings)
    http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.http_port}")
    try:
        yield Mesh(gateway, worker, host, http)
    finally:
        await http.aclose()
        await worker.stop()
        await host.stop(0)
        await gateway.stop()


def url(server: object) -> str:
    assert server is not None
    return str(server.url)  # type: ignore[attr-defined]


async def test_each_service_serves_its_metrics_after_real_runs(
    mesh: Mesh, connection: asyncpg.Connection
) -> None:
    three = [await mesh.send("test.three", {"n": n}) for n in (1, 2)]
    refused = await mesh.send("test.gives-up", {})
    for event_id in three:
        await wait_status(connection, event_id, "completed")
    await wait_status(connection, refused, "failed")

    gateway = await scrape(url(mesh.gateway.metrics_server))
    assert gateway[("reverb_events_accepted_total", (("source", "api"),))] == 3

    worker = await scrape(url(mesh.worker.metrics_server))
    three_steps = (("function_id", "three-steps"),)
    gives_up = (("function_id", "gives-up"),)
    assert worker[("reverb_runs_started_total", three_steps)] == 2
    assert worker[("reverb_runs_completed_total", three_steps)] == 2
    assert worker[("reverb_runs_started_total", gives_up)] == 1
    assert worker[("reverb_runs_failed_total", gives_up)] == 1
    assert ("reverb_runs_completed_total", gives_up) not in worker
    # Three step attempts per run of three-steps, each timed by the host.
    assert worker[("reverb_step_duration_seconds_count", three_steps)] == 6
    assert 0 < worker[("reverb_step_duration_seconds_sum", three_steps)] < 5
    buckets = {
        dict(labels)["le"]: value
        for (name, labels), value in worker.items()
        if name == "reverb_step_duration_seconds_bucket"
        and dict(labels)["function_id"] == "three-steps"
    }
    assert buckets["+Inf"] == 6
    # The worker keeps one session with the host it called, and the host counts it.
    assert worker[("reverb_worker_host_sessions", ())] == 1
    host = await scrape(url(mesh.host.metrics_server))
    assert host[("reverb_host_sessions", ())] == 1
    # Nothing is waiting to be taken.
    assert worker[("reverb_queue_oldest_due_job_age_seconds", ())] == 0


async def test_the_queue_gauges_show_due_and_delayed_jobs(
    mesh: Mesh, connection: asyncpg.Connection
) -> None:
    # A run sleeping: its wake-up is a delayed job until the sleep ends.
    napping = await mesh.send("test.naps", {})

    async def delayed() -> bool:
        worker = await scrape(url(mesh.worker.metrics_server))
        return any(
            value >= 1
            for (name, labels), value in worker.items()
            if name == "reverb_queue_jobs" and dict(labels)["state"] == "delayed"
        )

    await eventually(delayed, within=10, what="a delayed job in the scrape")
    await wait_status(connection, napping, "completed")

    # A job due for 90 s that no worker takes (a kind no worker knows): the oldest due
    # job's age says how far behind the queue is.
    await connection.execute(
        f"INSERT INTO {jobs.QUEUE_TABLE} (priority, entrypoint, payload, execute_after, status)"
        " VALUES (0, 'unknown-kind', NULL, now() - interval '90 seconds', 'queued')"
    )
    worker = await scrape(url(mesh.worker.metrics_server))
    assert worker[("reverb_queue_jobs", (("kind", "unknown-kind"), ("state", "due")))] == 1
    assert 89 < worker[("reverb_queue_oldest_due_job_age_seconds", ())] < 120


async def test_no_metrics_endpoint_unless_an_address_is_set(database_url: str) -> None:
    gateway = await start_gateway(
        GatewaySettings(
            database_url=database_url,
            http_address="127.0.0.1:0",
            ingress_address="127.0.0.1:0",
            dev=True,
        )
    )
    try:
        assert gateway.metrics_server is None
    finally:
        await gateway.stop()


async def test_cron_ticks_fired_and_missed_are_counted(
    database_url: str, connection: asyncpg.Connection
) -> None:
    every = TriggerDefinition(cron="*/15 * * * *", catch_up="all")
    await control.register_app(connection, definition(every), LEASE, T0)
    # Every worker was down from 09:00 to 12:05: the worker's first tick fires the last
    # four of the 13 ticks that fell due (catch_up="all" keeps at most four) and misses 9.
    clock = DrivenClock(datetime(2030, 1, 7, 12, 5, tzinfo=UTC))
    settings = worker_settings(database_url).model_copy(update={"metrics_address": "127.0.0.1:0"})
    worker = await start_worker(settings, clock=clock)
    try:

        async def counted() -> bool:
            scraped = await scrape(url(worker.metrics_server))
            return scraped.get(("reverb_cron_ticks_fired_total", ()), 0) >= 4

        await eventually(counted, within=15, what="the cron tick to be counted")
        scraped = await scrape(url(worker.metrics_server))
    finally:
        await worker.stop()
    assert scraped[("reverb_cron_ticks_fired_total", ())] == 4
    assert scraped[("reverb_cron_ticks_missed_total", ())] == 9
