"""An app for the trace tests: three steps (the second fails twice, then succeeds), a sleep
between them, and an httpx call through its OpenTelemetry instrumentation in the last."""

import os

import httpx
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

import reverb
from reverb import Context, event

HTTPXClientInstrumentor().instrument()

app = reverb.App("traced")


def first() -> str:
    return "one"


def flaky(attempt: int) -> str:
    if attempt < 2:
        raise RuntimeError(f"flaky on attempt {attempt}")
    return "two"


async def last() -> int:
    # A user span: the instrumented httpx call is a child of this step's span.
    async with httpx.AsyncClient() as client:
        response = await client.get(os.environ["REVERB_TEST_PROBE_URL"])
    return response.status_code


@app.function("traced", trigger=event("trace.test"), retries=3)
async def traced(ctx: Context) -> list[object]:
    one = await ctx.step.run("first", first)
    two = await ctx.step.run("flaky", flaky, ctx.attempt)
    await ctx.step.sleep("nap", "1s")
    three = await ctx.step.run("last", last)
    return [one, two, three]
