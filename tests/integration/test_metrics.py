"""Prometheus metrics scraped over real HTTP from a gateway, a worker and a host (each with
REVERB_METRICS_ADDRESS set) after real runs: events accepted, runs started, completed and
failed by function, step durations, the queue's depth and the oldest due job's age, host
sessions, cron ticks fired and missed (by function and reason, with their log line); and
no endpoint at all when the address is unset."""

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
import httpx
import pytest
import structlog
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
from tests.integration.test_cron_scheduler import (
    LEASE,
    T0,
    DrivenClock,
    _ended,
    _holding,
    _register_held,
    definition,
    released,
    schedule_row,
)
from tests.integration.test_cron_scheduler import app as held_app
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


SNAKE = re.compile(r"[a-z][a-z0-9_]*")
# Base units (prometheus.io/docs/practices/naming): what a name may end with besides _total.
UNITS = ("_seconds", "_bytes", "_ratio")


async def test_names_and_labels_follow_prometheus_conventions(
    mesh: Mesh, connection: asyncpg.Connection
) -> None:
    """Every family each service exposes after real runs: `reverb_` and snake case, a
    counter's samples end in `_total` and a gauge's do not, a histogram is in seconds,
    a time is named by its base unit, and labels are snake case and not reserved."""
    await wait_status(connection, await mesh.send("test.three", {"n": 3}), "completed")
    servers = (mesh.gateway.metrics_server, mesh.worker.metrics_server, mesh.host.metrics_server)
    seen: set[str] = set()
    for server in servers:
        async with httpx.AsyncClient() as client:
            text = (await client.get(url(server))).text
        for family in text_string_to_metric_families(text):
            seen.add(family.name)
            assert family.name.startswith("reverb_") and SNAKE.fullmatch(family.name), family
            assert family.documentation, family.name
            if family.type == "histogram":
                assert family.name.endswith("_seconds"), family.name
            if any(word in family.name for word in ("duration", "age", "time")):
                assert family.name.endswith(UNITS), family.name
            for sample in family.samples:
                if family.type == "counter":
                    assert sample.name.endswith(("_total", "_created")), sample.name
                if family.type == "gauge":
                    assert not sample.name.endswith("_total"), sample.name
                for label in sample.labels:
                    assert SNAKE.fullmatch(label) and not label.startswith("__"), label
    assert {
        "reverb_events_accepted",
        "reverb_runs_started",
        "reverb_runs_completed",
        "reverb_step_duration_seconds",
        "reverb_queue_jobs",
        "reverb_queue_oldest_due_job_age_seconds",
        "reverb_host_sessions",
        "reverb_log_sink_backlog",
        "reverb_log_sink_dropped",
    } <= seen


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
    with structlog.testing.capture_logs() as logs:
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
    missed = (("function_id", "report"), ("reason", "catch_up_window"))
    assert scraped[("reverb_cron_ticks_missed_total", missed)] == 9
    # One line for the nine: their range, and why none of them ran.
    [line] = [log for log in logs if log["event"] == "cron ticks missed"]
    assert line == {
        "event": "cron ticks missed",
        "log_level": "warning",
        "function_id": "report",
        "reason": "catch_up_window",
        "missed": 9,
        "first": "2030-01-07T09:00:00Z",
        "latest": "2030-01-07T11:00:00Z",
    }


async def test_cron_ticks_missed_and_skipped_while_a_run_goes_on_are_logged_and_counted(
    database_url: str, connection: asyncpg.Connection
) -> None:
    released.clear()
    host = await start_host(held_app, host_settings(), register_app=False)
    # Registered before the worker starts: the cron_tick it queues finds the host listed.
    await _register_held(connection, host, "skip")
    clock = DrivenClock(datetime(2030, 1, 7, 9, 0, 1, tzinfo=UTC))
    settings = worker_settings(database_url).model_copy(update={"metrics_address": "127.0.0.1:0"})
    with structlog.testing.capture_logs() as logs:
        worker = await start_worker(settings, clock=clock)
        try:
            [first] = await _holding(connection, 1)  # the 09:00 tick's run, held in its step
            # No worker fired 09:01 and 09:02; at 09:03:05 a cron_tick fires: catch_up
            # "latest" runs only 09:03, and overlap "skip" skips it (09:00's run goes on).
            clock.time = datetime(2030, 1, 7, 9, 3, 5, tzinfo=UTC)
            await jobs.enqueue(connection, [jobs.CronTick()])
            skipped = (("function_id", "held"), ("reason", "previous_running"))

            async def counted() -> bool:
                scraped = await scrape(url(worker.metrics_server))
                return scraped.get(("reverb_cron_ticks_skipped_total", skipped), 0) >= 1

            await eventually(counted, within=15, what="the skipped tick to be counted")
            scraped = await scrape(url(worker.metrics_server))
            released[first].set()
            await eventually(lambda: _ended(connection, first), within=15, what="the run's end")
        finally:
            released[first].set()
            await worker.stop()
            await host.stop(0)
    assert scraped[("reverb_cron_ticks_fired_total", ())] == 1
    assert scraped[("reverb_cron_ticks_skipped_total", skipped)] == 1
    missed = (("function_id", "held"), ("reason", "catch_up_latest"))
    assert scraped[("reverb_cron_ticks_missed_total", missed)] == 2
    row = await schedule_row(connection)
    assert (row["missed"], row["skipped"]) == (2, 1)
    cron_lines = [log for log in logs if log["event"].startswith("cron tick")]
    assert cron_lines == [
        {
            "event": "cron ticks missed",
            "log_level": "warning",
            "function_id": "held",
            "reason": "catch_up_latest",
            "missed": 2,
            "first": "2030-01-07T09:01:00Z",
            "latest": "2030-01-07T09:02:00Z",
        },
        {
            "event": "cron tick skipped",
            "log_level": "info",
            "function_id": "held",
            "tick": "2030-01-07T09:03:00Z",
            "reason": "previous_running",
        },
    ]
