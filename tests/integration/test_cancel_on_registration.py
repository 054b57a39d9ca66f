"""`cancel_on` takes the real path: the SDK's definition, RegisterApp over gRPC,
`functions.cancel_on` and its wait keys, GET /functions and the OpenAPI document; a bad
entry is refused naming the function and the entry."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg
import grpc
import httpx
import orjson
import pytest

import reverb
from reverb import Context, event
from reverb_contracts.v1 import ingress_pb2, ingress_pb2_grpc
from reverb_function_host.wire.messages import register_app_request
from reverb_ingress_gateway import Gateway
from reverb_store.control import registry


@pytest.fixture
async def ingress(gateway: Gateway) -> AsyncIterator[ingress_pb2_grpc.IngressAsyncStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.grpc_port}") as channel:
        yield ingress_pb2_grpc.IngressStub(channel)


async def register(ingress: ingress_pb2_grpc.IngressAsyncStub, app: reverb.App) -> bool:
    request = register_app_request(app, "127.0.0.1:1", timedelta(seconds=30), "instance")
    response: ingress_pb2.RegisterAppResponse = await ingress.RegisterApp(request)
    return response.changed


def cancel_app(*cancel_on: reverb.CancelOn) -> reverb.App:
    app = reverb.App("cancel-on-registration")

    @app.function("fulfil", trigger=event("order.created"), cancel_on=list(cancel_on))
    async def fulfil(ctx: Context) -> None: ...

    return app


ENTRIES = (
    reverb.CancelOn("order.cancelled", match="data.order_id"),
    reverb.CancelOn(
        "order.refunded",
        match="data.order.id",
        if_="async.data.amount >= event.data.total",
        timeout="30m",
    ),
    reverb.CancelOn("shop.closed"),
)


async def test_cancel_on_is_stored_with_its_wait_keys_and_listed(
    ingress: ingress_pb2_grpc.IngressAsyncStub, connection: asyncpg.Connection, gateway: Gateway
) -> None:
    assert await register(ingress, cancel_app(*ENTRIES)) is True

    stored = await connection.fetchval("SELECT cancel_on FROM reverb.functions WHERE id = 'fulfil'")
    assert orjson.loads(stored) == [
        {"event": "order.cancelled", "match": "data.order_id", "path": ["order_id"]},
        {
            "event": "order.refunded",
            "match": "data.order.id",
            "path": ["order", "id"],
            "if": "async.data.amount >= event.data.total",
            "timeout_ms": 1_800_000,
        },
        {"event": "shop.closed", "path": []},
    ]
    # Every event of these names gets a match_waits job from now on.
    keys = await connection.fetch("SELECT event_name, match_path FROM reverb.wait_keys")
    assert sorted((row["event_name"], tuple(row["match_path"])) for row in keys) == [
        ("order.cancelled", ("order_id",)),
        ("order.refunded", ("order", "id")),
        ("shop.closed", ()),
    ]
    # The same definitions again change nothing; the hash covers cancel_on.
    assert await register(ingress, cancel_app(*ENTRIES)) is False
    assert await register(ingress, cancel_app(ENTRIES[0])) is True
    assert await register(ingress, cancel_app(*ENTRIES)) is True

    url = f"http://127.0.0.1:{gateway.http_port}"
    async with httpx.AsyncClient(base_url=url) as client:
        listed = (await client.get("/functions")).json()["functions"]
        document = (await client.get("/openapi.json")).json()
    [fulfil] = [item for item in listed if item["id"] == "fulfil"]
    assert fulfil["cancel_on"] == [
        {"event": "order.cancelled", "match": "data.order_id", "condition": "", "timeout": None},
        {
            "event": "order.refunded",
            "match": "data.order.id",
            "condition": "async.data.amount >= event.data.total",
            "timeout": {"seconds": 1800, "nanos": 0},
        },
        {"event": "shop.closed", "match": "", "condition": "", "timeout": None},
    ]
    schemas = document["components"]["schemas"]
    assert {"event", "match", "condition", "timeout"} <= set(schemas["CancelOn"]["properties"])


async def test_a_function_without_cancel_on_stores_none_and_hashes_as_before(
    ingress: ingress_pb2_grpc.IngressAsyncStub, connection: asyncpg.Connection
) -> None:
    await register(ingress, cancel_app())
    assert await connection.fetchval("SELECT cancel_on FROM reverb.functions") is None
    assert await connection.fetchval("SELECT count(*) FROM reverb.wait_keys") == 0
    definition = registry.AppDefinition(
        "cancel-on-registration",
        (registry.FunctionDefinition("fulfil", "fulfil", 4, ()),),
    )
    assert b"cancel_on" not in registry.canonical_json(definition)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            reverb.CancelOn("order.cancelled", if_="async.data.reason =="),
            "function 'fulfil': cancel_on[0].if_",
        ),
        (
            reverb.CancelOn("order.cancelled", if_="order.data.reason == 'x'"),
            "function 'fulfil': cancel_on[0].if_",
        ),
    ],
)
async def test_a_condition_that_does_not_compile_is_refused_naming_the_function(
    ingress: ingress_pb2_grpc.IngressAsyncStub,
    connection: asyncpg.Connection,
    entry: reverb.CancelOn,
    message: str,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await register(ingress, cancel_app(entry))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in str(refused.value.details())
    assert await connection.fetchval("SELECT count(*) FROM reverb.functions") == 0


async def test_entries_built_by_another_client_are_checked_too(
    ingress: ingress_pb2_grpc.IngressAsyncStub,
) -> None:
    """A host in another language sends the proto directly: the gateway checks the form."""
    request = register_app_request(
        cancel_app(ENTRIES[0]), "127.0.0.1:1", timedelta(seconds=30), "instance"
    )
    bad = request.app.functions[0].cancel_on
    for field, value, expected in [
        ("event", "", "cancel_on[0]: event '' is not an event name"),
        ("match", "order_id", "cancel_on[0]: match 'order_id' must name a field"),
    ]:
        edited = ingress_pb2.RegisterAppRequest()
        edited.CopyFrom(request)
        setattr(edited.app.functions[0].cancel_on[0], field, value)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await ingress.RegisterApp(edited)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert expected in str(refused.value.details()), refused.value.details()
    edited = ingress_pb2.RegisterAppRequest()
    edited.CopyFrom(request)
    edited.app.functions[0].cancel_on[0].timeout.FromTimedelta(timedelta(seconds=-5))
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await ingress.RegisterApp(edited)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "cancel_on[0]: timeout must be longer than zero" in str(refused.value.details())
    assert len(bad) == 1
