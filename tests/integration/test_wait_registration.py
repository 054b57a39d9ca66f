"""Wait expressions written as literals in a function's source are checked when the app
registers (the SDK reads them from the source, RegisterApp over gRPC refuses a bad one
naming the function and the step); a wait built at run time is still checked when its
step runs."""

from __future__ import annotations

from datetime import timedelta

import asyncpg
import grpc
import pytest

import reverb
from reverb import Context, event
from reverb_contracts.v1 import ingress_pb2_grpc
from reverb_function_host.wire.messages import register_app_request
from tests.integration.test_cancel_on_registration import ingress, register

__all__ = ["ingress"]  # the fixture, shared


async def refused(ingress: ingress_pb2_grpc.IngressAsyncStub, app: reverb.App) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await register(ingress, app)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    return str(error.value.details())


async def test_a_bad_literal_condition_refuses_the_registration_naming_function_and_step(
    ingress: ingress_pb2_grpc.IngressAsyncStub, connection: asyncpg.Connection
) -> None:
    app = reverb.App("wait-registration")

    @app.function("await-payment", trigger=event("order.created"))
    async def await_payment(ctx: Context) -> object:
        await ctx.step.run("charge", lambda: None)
        return await ctx.step.wait_for_event(
            "wait-paid", event="order.paid", if_="async.data.amount >", timeout="1h"
        )

    details = await refused(ingress, app)
    assert "function 'await-payment', step 'wait-paid': if_" in details, details
    assert await connection.fetchval("SELECT count(*) FROM reverb.functions") == 0


async def test_a_bad_wait_in_wait_for_any_or_a_bad_match_is_refused_too(
    ingress: ingress_pb2_grpc.IngressAsyncStub,
) -> None:
    unknown_variable = reverb.App("wait-registration")

    @unknown_variable.function("paid-or-cancelled", trigger=event("order.created"))
    async def paid_or_cancelled(ctx: Context) -> object:
        return await ctx.step.wait_for_any(
            "first",
            [
                reverb.Wait(event="order.paid", match="data.order_id"),
                reverb.Wait("order.cancelled", "data.order_id", "order.data.reason == 'x'"),
            ],
        )

    details = await refused(ingress, unknown_variable)
    assert "function 'paid-or-cancelled', step 'first': if_" in details, details

    bad_match = reverb.App("wait-registration")

    @bad_match.function("await-shipping", trigger=event("order.created"))
    async def await_shipping(ctx: Context) -> object:
        return await ctx.step.wait_for_event("shipped", event="order.shipped", match="order_id")

    details = await refused(ingress, bad_match)
    assert "function 'await-shipping', step 'shipped': match 'order_id'" in details, details


async def test_good_literals_and_dynamic_expressions_register(
    ingress: ingress_pb2_grpc.IngressAsyncStub, connection: asyncpg.Connection
) -> None:
    app = reverb.App("wait-registration")

    @app.function("await-big-payment", trigger=event("order.created"))
    async def await_big_payment(ctx: Context) -> object:
        return await ctx.step.wait_for_event(
            "wait-paid",
            event="order.paid",
            match="data.order_id",
            if_="async.data.amount >= event.data.minimum",
        )

    @app.function("await-anything", trigger=event("order.other"))
    async def await_anything(ctx: Context) -> object:
        # Built at run time: registration cannot know it, the worker checks it.
        condition = str(ctx.event.data["condition"])
        return await ctx.step.wait_for_event("dynamic", event="order.paid", if_=condition)

    assert await register(ingress, app)
    stored = await connection.fetch("SELECT id FROM reverb.functions ORDER BY id")
    assert [row["id"] for row in stored] == ["await-anything", "await-big-payment"]


async def test_expressions_sent_by_another_client_are_checked_too(
    ingress: ingress_pb2_grpc.IngressAsyncStub,
) -> None:
    """A host in another language fills the proto itself; without a literal step id the
    message names the function."""
    app = reverb.App("wait-registration")

    @app.function("plain", trigger=event("order.created"))
    async def plain(ctx: Context) -> None: ...

    request = register_app_request(app, "127.0.0.1:1", timedelta(seconds=30), "instance")
    request.app.functions[0].waits.add(condition="async.data.x ==")
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await ingress.RegisterApp(request)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "function 'plain': if_" in str(error.value.details())
