"""The `time_out_run` handler: a function timeout's deadline came due
(`reverb_store.execution.timeouts`)."""

import structlog

from reverb_queue_worker.database import acquire
from reverb_queue_worker.jobs.active import ActiveJob
from reverb_queue_worker.services import Services
from reverb_store import execution
from reverb_store.ids import RunId
from reverb_store.jobs import TimeOutRun

_log = structlog.get_logger("reverb.queue_worker")


async def time_out_run(services: Services, job: ActiveJob, payload: TimeOutRun) -> None:
    """Fail the run with FunctionTimeout if it is still in flight past its limit."""
    async with acquire(services.pool) as connection:
        failed = await execution.time_out_run(
            connection, RunId(payload.run_id), payload.limit, job, services.gates
        )
    if failed:
        _log.info("run timed out", run_id=payload.run_id, limit=payload.limit)
