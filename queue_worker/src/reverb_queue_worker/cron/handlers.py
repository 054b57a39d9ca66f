"""The `cron_tick` and `cron_fire` handlers (the scheduler itself is `reverb_store.cron`).

`cron_tick` fires every schedule due by the worker's clock (`Services.clock`, which
tests drive), then schedules the next `cron_tick` through the running job, so this
worker's timer wakes for it (and any worker's next-due read finds it).
"""

import structlog

from reverb_queue_worker.database import acquire
from reverb_queue_worker.jobs.active import ActiveJob
from reverb_queue_worker.services import Services
from reverb_store import cron, execution
from reverb_store.flow.options import parse as parse_flow
from reverb_store.ids import AppId, EventId, FunctionId
from reverb_store.jobs import CronTick, FireCron

_log = structlog.get_logger("reverb.queue_worker")


async def tick_cron(services: Services, job: ActiveJob, payload: CronTick) -> None:
    """Fire the due schedules, then queue the next tick's job."""
    async with acquire(services.pool) as connection:
        fired = await cron.fire_due(connection, services.clock.now(), services.gates, wakeups=job)
        await cron.schedule_next(connection, services.clock.now(), job, fired)
    metrics = services.metrics
    metrics.cron_ticks_fired.inc(fired.runs)
    for lost in fired.lost:
        counter = metrics.cron_ticks_missed if lost.kind == "missed" else metrics.cron_ticks_skipped
        counter.labels(lost.function_id, lost.reason).inc(lost.count)
    if fired.schedules:
        _log.debug("cron schedules fired", schedules=fired.schedules, runs=fired.runs)


async def fire_cron(services: Services, job: ActiveJob, payload: FireCron) -> None:
    """Start a run of the function for each of the job's stored cron events."""
    async with acquire(services.pool) as connection:
        function = await connection.fetchrow(
            "SELECT app_id, retries, flow::text AS flow FROM reverb.functions WHERE id = $1",
            payload.function_id,
        )
        if function is None:
            _log.warning("cron ticks of a removed function", function_id=payload.function_id)
            return
        starts = [
            execution.RunStart(
                FunctionId(payload.function_id),
                AppId(function["app_id"]),
                EventId(event_id),
                function["retries"],
                parse_flow(function["flow"]),
            )
            for event_id in payload.event_ids
        ]
        await execution.start_runs(connection, starts, services.gates, job)
