"""`reverb._wait_sources.literal_waits`: what the SDK reads from a function's source."""

import reverb
from reverb import Context
from reverb._wait_sources import WaitExpression, literal_waits

SHARED = reverb.Wait("order.refunded", if_="async.data.total > 0")


async def waits_of_every_form(ctx: Context) -> object:
    dynamic = str(ctx.event.data["if"])
    await ctx.step.wait_for_event("paid", event="order.paid", match="data.id", if_="true")
    await ctx.step.wait_for_event("any-paid", event="order.paid", if_=dynamic)
    await ctx.step.wait_for_event(f"step-{dynamic}", event="order.paid", if_="false")
    await ctx.step.wait_for_any(
        "either",
        [reverb.Wait("order.paid", "data.id"), reverb.Wait(event="x", if_="async.data.y")],
    )
    await ctx.step.wait_for_all("both", [SHARED, reverb.Wait("order.shipped")])
    return reverb.Wait("order.late", match="data.late_id")


def test_literals_are_found_with_their_step_and_the_rest_is_left_to_run_time() -> None:
    assert literal_waits(waits_of_every_form) == (
        WaitExpression("paid", "data.id", "true"),
        WaitExpression(None, None, "false"),  # the step id is not a literal
        WaitExpression("either", "data.id", None),
        WaitExpression("either", None, "async.data.y"),
        WaitExpression(None, "data.late_id", None),  # not written in a wait step
    )


def test_a_function_whose_source_cannot_be_read_has_none() -> None:
    namespace: dict[str, object] = {}
    exec(
        "async def handler(ctx):\n    return await ctx.step.wait_for_event('a', 'b', if_='(')",
        namespace,
    )  # noqa: S102
    handler = namespace["handler"]
    assert callable(handler)
    assert literal_waits(handler) == ()


def test_the_definition_carries_them() -> None:
    app = reverb.App("sources")
    app.function("with-waits", trigger=reverb.event("go"))(waits_of_every_form)
    assert reverb.FunctionDefinition.of(waits_of_every_form).waits == literal_waits(
        waits_of_every_form
    )
