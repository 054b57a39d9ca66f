"""Registering `on_failure` and timeouts: RegisterApp over gRPC stores them, refuses what
cannot be run, and hashes definitions without them as before."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg
import grpc
import pytest

from reverb_contracts.v1 import common_pb2, ingress_pb2, ingress_pb2_grpc
from reverb_ingress_gateway import Gateway
from reverb_store.control.registry import (
    AppDefinition,
    FunctionDefinition,
    TriggerDefinition,
    canonical_json,
)


@pytest.fixture
async def ingress(gateway: Gateway) -> AsyncIterator[ingress_pb2_grpc.IngressAsyncStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.grpc_port}") as channel:
        yield ingress_pb2_grpc.IngressStub(channel)


def _app(**options: object) -> common_pb2.AppDefinition:
    return common_pb2.AppDefinition(
        id="shop",
        functions=[
            common_pb2.FunctionDefinition(
                id="charge",
                triggers=[common_pb2.Trigger(event="order.placed")],
                retries=2,
                **options,  # type: ignore[arg-type]
            ),
            common_pb2.FunctionDefinition(id="charge-failure", retries=2),
        ],
    )


async def _register(
    ingress: ingress_pb2_grpc.IngressAsyncStub, app: common_pb2.AppDefinition
) -> None:
    await ingress.RegisterApp(ingress_pb2.RegisterAppRequest(app=app, host_address="h:1"))


async def test_options_are_stored_and_listed(
    ingress: ingress_pb2_grpc.IngressAsyncStub, connection: asyncpg.Connection
) -> None:
    await _register(
        ingress,
        _app(on_failure="charge-failure", start_timeout_ms=300_000, finish_timeout_ms=3_600_000),
    )

    row = await connection.fetchrow(
        "SELECT on_failure, start_timeout, finish_timeout FROM reverb.functions WHERE id = $1",
        "charge",
    )
    assert row is not None
    assert tuple(row) == ("charge-failure", timedelta(minutes=5), timedelta(hours=1))
    listed = await ingress.ListFunctions(ingress_pb2.ListFunctionsRequest())
    charge = next(f.definition for f in listed.functions if f.definition.id == "charge")
    assert (charge.on_failure, charge.start_timeout_ms, charge.finish_timeout_ms) == (
        "charge-failure",
        300_000,
        3_600_000,
    )
    # Registered again without them, they are gone.
    await _register(ingress, _app())
    row = await connection.fetchrow(
        "SELECT on_failure, start_timeout, finish_timeout FROM reverb.functions WHERE id = $1",
        "charge",
    )
    assert row is not None
    assert tuple(row) == (None, None, None)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"on_failure": "nobody"}, "on_failure names 'nobody', which app 'shop' does not define"),
        ({"start_timeout_ms": -1}, "start_timeout_ms must be between 1 and"),
        ({"finish_timeout_ms": 10**15}, "finish_timeout_ms must be between 1 and"),
    ],
)
async def test_options_that_cannot_run_are_refused(
    ingress: ingress_pb2_grpc.IngressAsyncStub, options: dict[str, object], message: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await _register(ingress, _app(**options))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in (refused.value.details() or "")


def test_the_hash_of_definitions_without_options_is_unchanged() -> None:
    plain = FunctionDefinition("a", "a", 3, (TriggerDefinition(event="x"),))
    assert canonical_json(AppDefinition("shop", (plain,))) == (
        b'{"functions":[{"id":"a","name":"a","retries":3,"triggers":[{"event":"x"}]}],"id":"shop"}'
    )
    with_options = FunctionDefinition(
        "a",
        "a",
        3,
        (TriggerDefinition(event="x"),),
        on_failure="a-failure",
        finish_timeout=timedelta(seconds=90),
    )
    assert canonical_json(AppDefinition("shop", (with_options,))) == (
        b'{"functions":[{"finish_timeout_ms":90000,"id":"a","name":"a","on_failure":"a-failure",'
        b'"retries":3,"triggers":[{"event":"x"}]}],"id":"shop"}'
    )
