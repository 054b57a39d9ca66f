"""Flow-control options take the real path: the SDK's definition, RegisterApp over gRPC,
`functions.flow`; a bad key or priority is refused naming the function and the field.
Definitions from other SDKs (reverb.v1 messages) are checked the same way."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg
import grpc
import orjson
import pytest
from google.protobuf.duration_pb2 import Duration

import reverb
from reverb import Context, event
from reverb_contracts.v1 import common_pb2, ingress_pb2, ingress_pb2_grpc
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


def flow_app(**options: object) -> reverb.App:
    app = reverb.App("flow-registration")

    @app.function("sync-tenant", trigger=event("tenant.sync"), **options)  # type: ignore[arg-type]
    async def sync_tenant(ctx: Context) -> None: ...

    return app


async def test_every_option_is_stored_with_the_function(
    ingress: ingress_pb2_grpc.IngressAsyncStub, connection: asyncpg.Connection
) -> None:
    app = flow_app(
        concurrency=[
            reverb.Concurrency(limit=3, key="event.data.tenant_id"),
            reverb.Concurrency(limit=10, key="'all'", scope="app"),
        ],
        throttle=reverb.Throttle(limit=10, period="1m", burst=2),
        rate_limit=reverb.RateLimit(limit=1, period="1h", key="event.data.user_id"),
        priority=reverb.Priority(run="event.data.plan == 'enterprise' ? 120 : 0"),
    )
    assert await register(ingress, app) is True

    stored = await connection.fetchval("SELECT flow FROM reverb.functions WHERE id = 'sync-tenant'")
    assert orjson.loads(stored) == {
        "concurrency": [
            {"limit": 3, "key": "event.data.tenant_id", "scope": "function"},
            {"limit": 10, "key": "'all'", "scope": "app"},
        ],
        "throttle": {"limit": 10, "period_ms": 60_000, "key": None, "burst": 2},
        "rate_limit": {"limit": 1, "period_ms": 3_600_000, "key": "event.data.user_id"},
        "priority": {"run": "event.data.plan == 'enterprise' ? 120 : 0"},
    }
    # The same definitions again change nothing; the hash covers the options.
    assert await register(ingress, app) is False
    assert await register(ingress, flow_app(concurrency=4)) is True


async def test_arrival_options_are_stored_with_the_function(
    ingress: ingress_pb2_grpc.IngressAsyncStub, connection: asyncpg.Connection
) -> None:
    app = flow_app(
        debounce=reverb.Debounce(period="5s", key="event.data.user", timeout="1m"),
        idempotency="event.data.order_id",
        singleton=reverb.Singleton(key="event.data.user", mode="cancel"),
        concurrency=2,
    )
    assert await register(ingress, app) is True

    query = "SELECT flow FROM reverb.functions WHERE id = 'sync-tenant'"
    assert orjson.loads(await connection.fetchval(query)) == {
        "concurrency": [{"limit": 2, "key": None, "scope": "function"}],
        "debounce": {"period_ms": 5000, "key": "event.data.user", "timeout_ms": 60000},
        "idempotency": "event.data.order_id",
        "singleton": {"key": "event.data.user", "mode": "cancel"},
    }
    # The same definitions again change nothing; other options are a change.
    assert await register(ingress, app) is False
    batched = flow_app(batch=reverb.Batch(max_size=10, timeout="2s"))
    assert await register(ingress, batched) is True
    assert orjson.loads(await connection.fetchval(query)) == {
        "batch": {"max_size": 10, "timeout_ms": 2000, "key": None}
    }
    assert await register(ingress, flow_app()) is True
    assert await connection.fetchval(query) is None


async def test_a_function_without_flow_control_stores_none_and_hashes_as_before(
    ingress: ingress_pb2_grpc.IngressAsyncStub, connection: asyncpg.Connection
) -> None:
    await register(ingress, flow_app())
    row = await connection.fetchrow("SELECT flow FROM reverb.apps a, reverb.functions f")
    assert row is not None and row["flow"] is None
    definition = registry.AppDefinition(
        "flow-registration",
        (
            registry.FunctionDefinition(
                "sync-tenant", "sync-tenant", 4, (registry.TriggerDefinition(event="tenant.sync"),)
            ),
        ),
    )
    stored = await connection.fetchval("SELECT definition_hash FROM reverb.apps")
    assert stored == registry.definition_hash(definition)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"concurrency": reverb.Concurrency(2, key="event.data.")},
            "function 'sync-tenant': concurrency[0].key: Failed to parse",
        ),
        (
            {"concurrency": reverb.Concurrency(2, key="tenant.id")},
            "function 'sync-tenant': concurrency[0].key: unknown variable tenant",
        ),
        (
            {"throttle": reverb.Throttle(5, "1s", key="event.data.x +")},
            "function 'sync-tenant': throttle.key:",
        ),
        (
            {"rate_limit": reverb.RateLimit(1, "1h", key="order.id")},
            "function 'sync-tenant': rate_limit.key: unknown variable order",
        ),
        (
            {"priority": reverb.Priority("event.data.plan ==")},
            "function 'sync-tenant': priority.run:",
        ),
        (
            {"rate_limit": reverb.RateLimit(20_000, "1h")},
            "function 'sync-tenant': rate_limit.limit must be between 1 and 10,000",
        ),
        (
            {"throttle": reverb.Throttle(1, "30d")},
            "function 'sync-tenant': throttle.period must be between 1ms and 7 days",
        ),
        ({"idempotency": "event.data.("}, "function 'sync-tenant': idempotency: "),
        (
            {"debounce": reverb.Debounce(period="1s", key="tenant.id")},
            "function 'sync-tenant': debounce.key: unknown variable tenant",
        ),
        (
            {"singleton": reverb.Singleton(key="event.data.x +")},
            "function 'sync-tenant': singleton.key: ",
        ),
        (
            {"batch": reverb.Batch(max_size=5, timeout="1s", key="async.data.x")},
            "function 'sync-tenant': batch.key: unknown variable async",
        ),
    ],
)
async def test_a_bad_option_is_refused_naming_the_function_and_the_field(
    ingress: ingress_pb2_grpc.IngressAsyncStub,
    connection: asyncpg.Connection,
    options: dict[str, object],
    message: str,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await register(ingress, flow_app(**options))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in str(raised.value.details())
    assert await connection.fetchval("SELECT count(*) FROM reverb.apps") == 0


def _duration(**parts: float) -> Duration:
    duration = Duration()
    duration.FromTimedelta(timedelta(**parts))
    return duration


@pytest.mark.parametrize(
    ("function", "message"),
    [
        (
            common_pb2.FunctionDefinition(
                id="f", debounce=common_pb2.Debounce(period=_duration(seconds=0))
            ),
            "function 'f': debounce.period must be between 1ms and 7 days",
        ),
        (
            common_pb2.FunctionDefinition(
                id="f",
                debounce=common_pb2.Debounce(
                    period=_duration(seconds=1), timeout=_duration(days=8)
                ),
            ),
            "function 'f': debounce.timeout must be between 1ms and 7 days",
        ),
        (
            common_pb2.FunctionDefinition(
                id="f", batch=common_pb2.Batch(max_size=0, timeout=_duration(seconds=1))
            ),
            "function 'f': batch.max_size must be between 1 and 1,000",
        ),
        (
            common_pb2.FunctionDefinition(id="f", batch=common_pb2.Batch(max_size=2)),
            "function 'f': batch.timeout must be between 1ms and 7 days",
        ),
        (
            common_pb2.FunctionDefinition(
                id="f",
                batch=common_pb2.Batch(max_size=2, timeout=_duration(seconds=1)),
                debounce=common_pb2.Debounce(period=_duration(seconds=1)),
            ),
            "function 'f': debounce and batch cannot be combined",
        ),
        (
            common_pb2.FunctionDefinition(
                id="f",
                singleton=common_pb2.Singleton(mode=7),  # type: ignore[arg-type]
            ),
            "function 'f': singleton.mode 7 is unknown",
        ),
    ],
)
async def test_out_of_range_arrival_options_from_other_sdks_are_refused(
    ingress: ingress_pb2_grpc.IngressAsyncStub,
    connection: asyncpg.Connection,
    function: common_pb2.FunctionDefinition,
    message: str,
) -> None:
    function.triggers.append(common_pb2.Trigger(event="e"))
    request = ingress_pb2.RegisterAppRequest(
        app=common_pb2.AppDefinition(id="shop", functions=[function]), host_address="h:1"
    )
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await ingress.RegisterApp(request)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in str(raised.value.details())
    assert await connection.fetchval("SELECT count(*) FROM reverb.apps") == 0
