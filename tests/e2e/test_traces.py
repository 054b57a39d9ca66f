"""One trace per event, exported over OTLP by real gateway, worker and host processes to an
in-process receiver of each protocol (gRPC and HTTP/protobuf, Jaeger's two), for a run of
three steps (one tried three times) and a sleep, and a user span from an instrumented httpx call."""

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.processes import Service, eventually, free_port
from tests.otlp import RECEIVERS, ReceivedSpan, Receiver

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

# The app's path, not the module: importing it here would instrument httpx in the test
# process itself, and every test's own requests would then carry that instrumentation's
# traceparent instead of theirs.
APP = str(Path(__file__).parent / "apps" / "traced.py")


@pytest.fixture
def running() -> Iterator[list[Service]]:
    services: list[Service] = []
    yield services
    for service in reversed(services):
        service.stop()


@pytest.fixture(params=sorted(RECEIVERS))
async def receiver(request: pytest.FixtureRequest) -> AsyncIterator[Receiver]:
    async with RECEIVERS[request.param]() as receiver:
        yield receiver


async def start_mesh(
    database_url: str, logs: Path, receiver: Receiver, running: list[Service]
) -> httpx.AsyncClient:
    http_port = free_port()
    env = {
        "REVERB_DATABASE_URL": database_url,
        "REVERB_DEV": "true",
        "REVERB_HTTP_ADDRESS": f"127.0.0.1:{http_port}",
        "REVERB_INGRESS_ADDRESS": f"127.0.0.1:{free_port()}",
        "REVERB_HOST_ADDRESS": f"127.0.0.1:{free_port()}",
        "REVERB_SIGNING_KEY": "trace-test-signing-key",
        "REVERB_BACKOFF_BASE": "0.1",
        "REVERB_TEST_PROBE_URL": f"http://127.0.0.1:{http_port}/healthz",
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": receiver.protocol,
        "OTEL_BSP_SCHEDULE_DELAY": "50",
    }
    http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}")
    for name, args in (("gateway", ["gateway"]), ("worker", ["worker"]), ("host", ["host", APP])):
        running.append(Service(name, args, env, logs).start())

    async def ready() -> bool:
        try:
            functions = (await http.get("/functions")).json().get("functions", [])
        except httpx.TransportError:
            return False
        return any(function["id"] == "traced" for function in functions)

    await eventually(ready, what="the app to register")
    return http


async def finished_run(http: httpx.AsyncClient) -> dict[str, object]:
    response = await http.post("/events", json={"name": "trace.test", "data": {}})
    assert response.status_code == 202, response.text
    (event_id,) = response.json()["ids"]

    async def done() -> bool:
        runs = (await http.get("/runs", params={"event": event_id})).json()["runs"]
        return bool(runs) and runs[0]["status"] in ("completed", "failed")

    await eventually(done, within=60, what="the run to finish")
    (summary,) = (await http.get("/runs", params={"event": event_id})).json()["runs"]
    run: dict[str, object] = (await http.get(f"/runs/{summary['id']}")).json()
    run["event_id"] = event_id
    return run


def named(spans: list[ReceivedSpan], name: str) -> list[ReceivedSpan]:
    return [span for span in spans if span.name == name]


def complete(spans: list[ReceivedSpan]) -> bool:
    return len(named(spans, "invoke traced")) == 4 and bool(named(spans, "run traced"))


async def test_a_run_is_one_trace_exported_over_otlp(
    database_url: str, tmp_path: Path, receiver: Receiver, running: list[Service]
) -> None:
    http = await start_mesh(database_url, tmp_path, receiver, running)
    try:
        run = await finished_run(http)
    finally:
        await http.aclose()
    assert run["status"] == "completed", run
    spans = await receiver.until(complete)

    trace_id = run["trace_id"]
    assert isinstance(trace_id, str) and len(trace_id) == 32
    ours = [span for span in spans if span.trace_id == trace_id]
    by_id = {span.span_id: span for span in ours}

    def parent(span: ReceivedSpan) -> ReceivedSpan:
        return by_id[span.parent_id]

    (request,) = named(ours, "POST /events")
    assert request.service == "reverb-gateway"
    assert request.attributes["reverb.event.id"] == [run["event_id"]]
    assert request.attributes["reverb.event.name"] == ["trace.test"]
    (fan_out,) = named(ours, "process_event")
    assert fan_out.service == "reverb-worker"
    assert parent(fan_out) is request

    # The run's span lasts from its creation to its end, across its four invocations
    # (the first, after each of the step's two retries, after the sleep) and the sleep.
    (whole,) = named(ours, "run traced")
    assert whole.service == "reverb-worker"
    assert parent(whole) is fan_out
    assert whole.attributes["reverb.run.id"] == run["id"]
    assert whole.attributes["reverb.function.id"] == "traced"
    assert whole.attributes["reverb.event.id"] == run["event_id"]
    assert whole.attributes["reverb.event.name"] == "trace.test"
    assert whole.attributes["reverb.run.status"] == "completed"
    advances = named(ours, "advance_run")
    assert len(advances) == 4
    assert {parent(span).span_id for span in advances} == {whole.span_id}
    invocations = named(ours, "invoke traced")
    assert len(invocations) == 4
    assert {span.service for span in invocations} == {"reverb-host"}
    for invocation in invocations:
        assert invocation.attributes["reverb.run.id"] == run["id"]
        assert invocation.attributes["reverb.function.id"] == "traced"
        assert parent(invocation).name == "advance_run"

    # The sleep's span has its real duration (at least the second asked for), in the run.
    (nap,) = named(ours, "sleep nap")
    assert parent(nap) is whole
    assert nap.attributes["reverb.step.id"] == "nap"
    assert nap.seconds >= 1.0
    assert whole.seconds >= nap.seconds

    # A step tried three times has three attempt spans: two failed, then one that did not.
    flaky = sorted(named(ours, "step flaky"), key=lambda span: span.span.start_time_unix_nano)
    assert [span.attributes["reverb.attempt"] for span in flaky] == [0, 1, 2]
    *failed, succeeded = flaky
    for attempt, span in enumerate(failed):
        assert span.span.status.code == span.span.status.STATUS_CODE_ERROR
        assert [event.name for event in span.span.events] == ["exception"]
        exception = {item.key: item.value.string_value for item in span.span.events[0].attributes}
        assert exception["exception.type"] == "RuntimeError"
        assert exception["exception.message"] == f"flaky on attempt {attempt}"
        assert "flaky" in exception["exception.stacktrace"]
        assert parent(span).name == "invoke traced"
    assert succeeded.span.status.code != succeeded.span.status.STATUS_CODE_ERROR
    (first,) = named(ours, "step first")
    assert first.attributes["reverb.attempt"] == 0
    (last,) = named(ours, "step last")
    assert last.attributes["reverb.step.id"] == "last"
    assert parent(last).name == "invoke traced"

    # The user's instrumented httpx call is a child of the step that made it.
    (user,) = [span for span in ours if span.parent_id == last.span_id]
    assert user.service == "reverb-host"
    assert user.attributes.get("http.request.method", user.attributes.get("http.method")) == "GET"
