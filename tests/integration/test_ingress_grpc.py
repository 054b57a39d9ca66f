"""reverb.v1.Ingress over real gRPC: health, reflection, events, reads and app registration."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from reverb_contracts.v1 import common_pb2, function_host_pb2, ingress_pb2, ingress_pb2_grpc
from reverb_ingress_gateway import Gateway
from reverb_store.jobs import ProcessEvent
from tests.integration.listeners import listen


@pytest.fixture
async def channel(gateway: Gateway) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.grpc_port}") as channel:
        yield channel


@pytest.fixture
def ingress(channel: grpc.aio.Channel) -> ingress_pb2_grpc.IngressAsyncStub:
    return ingress_pb2_grpc.IngressStub(channel)


def _error_code(error: grpc.aio.AioRpcError) -> str | None:
    for key, value in error.trailing_metadata() or ():
        if key == "reverb-error-code":
            return str(value)
    return None


async def test_health_says_serving(channel: grpc.aio.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "reverb.v1.Ingress"):
        response = await health.Check(health_pb2.HealthCheckRequest(service=service))
        assert response.status == health_pb2.HealthCheckResponse.SERVING


async def test_reflection_lists_the_ingress_service(channel: grpc.aio.Channel) -> None:
    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    call = reflection.ServerReflectionInfo()
    await call.write(reflection_pb2.ServerReflectionRequest(list_services=""))
    response = await call.read()
    await call.done_writing()
    names = {service.name for service in response.list_services_response.service}
    assert "reverb.v1.Ingress" in names
    assert "grpc.health.v1.Health" in names


async def test_send_events_stores_them_and_answers_with_ids(
    ingress: ingress_pb2_grpc.IngressAsyncStub, connection: asyncpg.Connection
) -> None:
    await listen(connection, "a", "b")
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    response = await ingress.SendEvents(
        ingress_pb2.SendEventsRequest(
            events=[
                function_host_pb2.EventInput(name="a", data=b'{"k": [1, 2]}'),
                function_host_pb2.EventInput(name="b", id="fixed"),
            ]
        ),
        metadata=(("traceparent", f"00-{trace_id}-b7ad6b7169203331-01"),),
    )
    assert len(response.ids) == 2 and response.ids[1] == "fixed"
    stored = await connection.fetch("SELECT id, data FROM reverb.events ORDER BY name")
    assert [(row["id"], row["data"]) for row in stored] == [
        (response.ids[0], '{"k": [1, 2]}'),
        ("fixed", "{}"),
    ]
    [payload] = await connection.fetch("SELECT payload FROM pgqueuer")
    job = ProcessEvent.decode(payload["payload"])
    assert job.event_ids == tuple(response.ids)
    assert job.traceparent is not None and trace_id in job.traceparent


@pytest.mark.parametrize(
    ("event", "code"),
    [
        (function_host_pb2.EventInput(name=""), "invalid_event"),
        (function_host_pb2.EventInput(name="x", data=b"[1]"), "invalid_event"),
        (function_host_pb2.EventInput(name="x", data=b"{nope"), "invalid_event"),
        (function_host_pb2.EventInput(name="x", data=b"\xff"), "invalid_event"),
        (function_host_pb2.EventInput(name="x", data=b"{}" + b" " * 524288), "payload_too_large"),
    ],
)
async def test_bad_events_are_invalid_arguments(
    ingress: ingress_pb2_grpc.IngressAsyncStub,
    connection: asyncpg.Connection,
    event: function_host_pb2.EventInput,
    code: str,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await ingress.SendEvents(ingress_pb2.SendEventsRequest(events=[event]))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _error_code(raised.value) == code
    assert await connection.fetchval("SELECT count(*) FROM reverb.events") == 0


async def test_unknown_ids_are_not_found(ingress: ingress_pb2_grpc.IngressAsyncStub) -> None:
    for call in (
        ingress.GetRun(ingress_pb2.GetRunRequest(id="nope")),
        ingress.GetEvent(ingress_pb2.GetEventRequest(id="nope")),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await call
        assert raised.value.code() == grpc.StatusCode.NOT_FOUND


async def test_page_sizes_are_clamped_and_checked(
    ingress: ingress_pb2_grpc.IngressAsyncStub,
) -> None:
    await ingress.SendEvents(
        ingress_pb2.SendEventsRequest(
            events=[function_host_pb2.EventInput(name="e") for _ in range(3)]
        )
    )
    page = await ingress.ListEvents(ingress_pb2.ListEventsRequest(page_size=100_000))
    assert len(page.events) == 3 and page.next_page_token == ""
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await ingress.ListRuns(ingress_pb2.ListRunsRequest(page_size=-1))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def _app(
    app_id: str = "shop", *functions: common_pb2.FunctionDefinition
) -> common_pb2.AppDefinition:
    return common_pb2.AppDefinition(
        id=app_id,
        functions=functions
        or (
            common_pb2.FunctionDefinition(
                id="handle-sign-up",
                retries=4,
                triggers=[common_pb2.Trigger(event="user.signed_up")],
            ),
            common_pb2.FunctionDefinition(
                id="daily-report",
                name="Daily report",
                triggers=[
                    common_pb2.Trigger(
                        cron=common_pb2.CronTrigger(expression="0 9 * * *", timezone="Europe/Paris")
                    )
                ],
            ),
        ),
    )


async def _register(
    ingress: ingress_pb2_grpc.IngressAsyncStub, app: common_pb2.AppDefinition, address: str
) -> bool:
    request = ingress_pb2.RegisterAppRequest(app=app, host_address=address)
    return (await ingress.RegisterApp(request)).changed


async def test_registering_the_same_app_again_changes_nothing(
    ingress: ingress_pb2_grpc.IngressAsyncStub, connection: asyncpg.Connection
) -> None:
    assert await _register(ingress, _app(), "10.0.0.1:8290") is True
    before = await connection.fetch(
        "SELECT id, updated_at, xmin::text FROM reverb.functions ORDER BY id"
    )
    app_before = await connection.fetchrow("SELECT updated_at, xmin::text FROM reverb.apps")
    assert await _register(ingress, _app(), "10.0.0.2:8290") is False
    after = await connection.fetch(
        "SELECT id, updated_at, xmin::text FROM reverb.functions ORDER BY id"
    )
    assert after == before
    assert await connection.fetchrow("SELECT updated_at, xmin::text FROM reverb.apps") == app_before
    hosts = await connection.fetch("SELECT address FROM reverb.app_hosts ORDER BY address")
    assert [row["address"] for row in hosts] == ["10.0.0.1:8290", "10.0.0.2:8290"]
    listed = await ingress.ListFunctions(ingress_pb2.ListFunctionsRequest())
    assert [
        (info.app_id, info.definition.id, info.definition.name) for info in listed.functions
    ] == [
        ("shop", "daily-report", "Daily report"),
        ("shop", "handle-sign-up", "handle-sign-up"),
    ]
    cron = listed.functions[0].definition.triggers[0].cron
    assert (cron.expression, cron.timezone) == ("0 9 * * *", "Europe/Paris")


async def test_a_changed_app_replaces_its_functions(
    ingress: ingress_pb2_grpc.IngressAsyncStub, connection: asyncpg.Connection
) -> None:
    await _register(ingress, _app(), "10.0.0.1:8290")
    changed = _app(
        "shop",
        common_pb2.FunctionDefinition(
            id="handle-sign-up",
            retries=2,
            triggers=[
                common_pb2.Trigger(event="user.created"),
                common_pb2.Trigger(event="user.invited"),
            ],
        ),
    )
    assert await _register(ingress, changed, "10.0.0.1:8290") is True
    functions = await connection.fetch("SELECT id, retries FROM reverb.functions")
    assert [(row["id"], row["retries"]) for row in functions] == [("handle-sign-up", 2)]
    triggers = await connection.fetch("SELECT event_name FROM reverb.triggers ORDER BY event_name")
    assert [row["event_name"] for row in triggers] == ["user.created", "user.invited"]


async def test_a_function_of_another_app_is_already_taken(
    ingress: ingress_pb2_grpc.IngressAsyncStub, connection: asyncpg.Connection
) -> None:
    await _register(ingress, _app(), "10.0.0.1:8290")
    thief = _app(
        "billing",
        common_pb2.FunctionDefinition(id="invoice"),
        common_pb2.FunctionDefinition(id="daily-report"),
    )
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await _register(ingress, thief, "10.0.0.3:8290")
    assert raised.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert "daily-report" in (raised.value.details() or "")
    assert await connection.fetchval("SELECT count(*) FROM reverb.apps WHERE id = 'billing'") == 0
    owners = await connection.fetch("SELECT id, app_id FROM reverb.functions ORDER BY id")
    assert [(row["id"], row["app_id"]) for row in owners] == [
        ("daily-report", "shop"),
        ("handle-sign-up", "shop"),
    ]


def _cron(expression: str, timezone: str = "") -> common_pb2.Trigger:
    return common_pb2.Trigger(cron=common_pb2.CronTrigger(expression=expression, timezone=timezone))


@pytest.mark.parametrize(
    ("app", "address"),
    [
        (_app(""), "h:1"),
        (_app("shop"), ""),
        (_app("my app", common_pb2.FunctionDefinition(id="f")), "h:1"),
        (_app("shop", common_pb2.FunctionDefinition(id="f", retries=21)), "h:1"),
        (_app("shop", common_pb2.FunctionDefinition(id="f", retries=-1)), "h:1"),
        (
            _app(
                "shop", common_pb2.FunctionDefinition(id="f"), common_pb2.FunctionDefinition(id="f")
            ),
            "h:1",
        ),
        (
            _app("shop", common_pb2.FunctionDefinition(id="f", triggers=[_cron("61 * * * *")])),
            "h:1",
        ),
        (
            _app("shop", common_pb2.FunctionDefinition(id="f", triggers=[_cron("* * * * * * *")])),
            "h:1",
        ),
        (
            _app(
                "shop",
                common_pb2.FunctionDefinition(
                    id="f", triggers=[_cron(f"{minute} * * * *") for minute in range(11)]
                ),
            ),
            "h:1",
        ),
        (
            _app(
                "shop",
                common_pb2.FunctionDefinition(
                    id="f",
                    triggers=[
                        common_pb2.Trigger(
                            cron=common_pb2.CronTrigger(expression="0 9 * * *", jitter_seconds=-1)
                        )
                    ],
                ),
            ),
            "h:1",
        ),
        (
            _app(
                "shop",
                common_pb2.FunctionDefinition(id="f", triggers=[_cron("0 9 * * *", "Mars/Base")]),
            ),
            "h:1",
        ),
        (
            _app("shop", common_pb2.FunctionDefinition(id="f", triggers=[common_pb2.Trigger()])),
            "h:1",
        ),
        (
            _app(
                "shop",
                common_pb2.FunctionDefinition(id="f", triggers=[common_pb2.Trigger(event="")]),
            ),
            "h:1",
        ),
        (_app("shop", common_pb2.FunctionDefinition(id="has space")), "h:1"),
    ],
)
async def test_bad_definitions_are_invalid_arguments(
    ingress: ingress_pb2_grpc.IngressAsyncStub,
    connection: asyncpg.Connection,
    app: common_pb2.AppDefinition,
    address: str,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await _register(ingress, app, address)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert await connection.fetchval("SELECT count(*) FROM reverb.apps") == 0
