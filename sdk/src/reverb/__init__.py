"""Reverb: write durable workflows as async Python functions made of steps.

import reverb
from reverb import Context, event

app = reverb.App("shop")

@app.function("handle-sign-up", trigger=event("user.signed_up"), retries=4)
async def handle_sign_up(ctx: Context) -> dict:
    user = await ctx.step.run("create-user", create_user, ctx.event.data["email"])
    await ctx.step.sleep("wait-two-weeks", "14d")
    await ctx.step.run("send-follow-up", send_email, user["email"])
    return {"user": user["id"]}
"""

from reverb._app import App, FunctionDefinition
from reverb._arrivals import Batch, Debounce, Singleton
from reverb._cancel_on import CancelOn
from reverb._context import Context
from reverb._durations import Duration, parse_duration
from reverb._errors import (
    NonRetriableError,
    OutputUnserializableError,
    RetryAfterError,
    ReverbError,
    StepArgumentError,
    StepError,
)
from reverb._event import Event
from reverb._flow import Concurrency, Priority, RateLimit, Throttle
from reverb._logger import Logger
from reverb._options import Step, Timeouts
from reverb._step import Steps
from reverb._triggers import CronTrigger, EventTrigger, Trigger, cron, event
from reverb._waits import Wait

__all__ = [
    "App",
    "Batch",
    "CancelOn",
    "Concurrency",
    "Context",
    "CronTrigger",
    "Debounce",
    "Duration",
    "Event",
    "EventTrigger",
    "FunctionDefinition",
    "Logger",
    "NonRetriableError",
    "OutputUnserializableError",
    "Priority",
    "RateLimit",
    "RetryAfterError",
    "ReverbError",
    "Singleton",
    "Step",
    "StepArgumentError",
    "StepError",
    "Steps",
    "Throttle",
    "Timeouts",
    "Trigger",
    "Wait",
    "cron",
    "event",
    "parse_duration",
]
