"""The job kinds in one registry: every kind has its payload, priority and handler, the
statements that build jobs in SQL agree with the payloads' encoding, and a job whose
payload cannot be read is dropped with a log. Real PostgreSQL and a real worker."""

from typing import get_args

import asyncpg
import pytest
import structlog

from reverb_queue_worker import start as start_worker
from reverb_queue_worker.jobs import entrypoints
from reverb_store import jobs
from reverb_store.jobs import AdvanceRun, ProcessEvent
from tests.e2e.processes import eventually
from tests.integration.test_worker_dispatch import never_polling


def test_every_kind_has_a_payload_a_priority_and_a_handler() -> None:
    assert sorted(jobs.KINDS) == sorted(get_args(jobs.KindName))
    assert sorted(entrypoints.HANDLERS) == sorted(jobs.KINDS)
    for name, binding in entrypoints.HANDLERS.items():
        assert binding.kind is jobs.KINDS[name]
    entrypoints.check()
    # Wake-ups are taken before other work.
    assert jobs.WAKE_RUN.priority > jobs.ADVANCE_RUN.priority == jobs.PROCESS_EVENT.priority


def test_each_payload_has_one_kind_due_now_and_one_delayed() -> None:
    run, fan_out = AdvanceRun("r"), ProcessEvent(("e",))
    assert jobs.kind_of(run, delayed=False) is jobs.ADVANCE_RUN
    assert jobs.kind_of(run, delayed=True) is jobs.WAKE_RUN
    assert jobs.kind_of(fan_out, delayed=False) is jobs.kind_of(fan_out, delayed=True)


@pytest.mark.parametrize(
    ("kind", "fields", "payload"),
    [
        (jobs.ADVANCE_RUN, {"run_id": "$1::text", "traceparent": "$2::text"}, AdvanceRun("r", "t")),
        (
            jobs.PROCESS_EVENT,
            {"event_ids": "ARRAY[$1::text, 'e2']", "traceparent": "$2::text"},
            ProcessEvent(("r", "e2"), "t"),
        ),
    ],
)
async def test_jobs_built_in_sql_read_as_the_kinds_payload(
    connection: asyncpg.Connection,
    kind: jobs.JobKind[jobs.JobPayload],
    fields: dict[str, str],
    payload: jobs.JobPayload,
) -> None:
    row = await connection.fetchrow(f"SELECT {kind.sql_columns(**fields)}", "r", "t")
    assert row is not None
    priority, name, stored = row
    assert (priority, name) == (kind.priority, kind.name)
    assert kind.payload.decode(stored) == payload


def test_sql_naming_other_fields_than_the_payloads_is_refused() -> None:
    with pytest.raises(TypeError, match="run_id"):
        jobs.ADVANCE_RUN.sql_columns(run="id", traceparent="NULL")


async def test_a_job_with_a_malformed_payload_is_dropped_with_a_log(
    database_url: str, connection: asyncpg.Connection
) -> None:
    await connection.execute(
        "INSERT INTO pgqueuer (priority, entrypoint, payload, status, execute_after)"
        " VALUES (0, 'advance_run', 'not json', 'queued', now())"
    )
    with structlog.testing.capture_logs() as logs:
        worker = await start_worker(never_polling(database_url))
        try:

            async def gone() -> bool:
                left: int = await connection.fetchval("SELECT count(*) FROM pgqueuer")
                return left == 0

            await eventually(gone, within=10, what="the malformed job to be dropped")
        finally:
            await worker.stop()
    dropped = [log for log in logs if log["event"] == "job with a malformed payload dropped"]
    assert [(log["entrypoint"], log["log_level"]) for log in dropped] == [("advance_run", "error")]
