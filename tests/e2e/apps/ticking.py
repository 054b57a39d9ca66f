"""An app for the cron crash test: a schedule every 2 s that catches up every missed tick."""

import reverb
from reverb import Context, cron

app = reverb.App("ticking")


@app.function("tick", trigger=cron("*/2 * * * * *", catch_up="all"))
async def tick(ctx: Context) -> str:
    return str(ctx.event.data["scheduled_at"])
