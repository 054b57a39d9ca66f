"""The chaos run's checker against a real database: it finds each kind of loss it reports
(an accepted event with no run, a run not finished, a step stored twice or replaced)."""

import json
from pathlib import Path
from typing import Any

import asyncpg

from bench.chaos import check
from bench.chaos.app import STEPS_EVENT


def event(identifier: str, steps: int = 2) -> dict[str, Any]:
    return {"id": identifier, "name": STEPS_EVENT, "data": {"steps": steps, "pause": 0}}


async def store(
    connection: asyncpg.Connection,
    identifier: str,
    status: str,
    steps: dict[str, str],
    output: list[str] | None,
) -> str:
    run_id = f"run-{identifier}"
    await connection.execute(
        "INSERT INTO reverb.events (id, name, data, ts) VALUES ($1, $2, '{}', now())",
        identifier,
        STEPS_EVENT,
    )
    await connection.execute(
        "INSERT INTO reverb.runs (id, function_id, app_id, status, event_ids, max_attempts,"
        " output) VALUES ($1, 'chaos-steps', 'chaos', $2, ARRAY[$3], 5, $4::jsonb)",
        run_id,
        status,
        identifier,
        json.dumps(output) if output is not None else None,
    )
    for step_id, value in steps.items():
        await connection.execute(
            "INSERT INTO reverb.steps (run_id, id, name, kind, status, output)"
            " VALUES ($1, $2, $3, 'run', 'completed', $4::jsonb)",
            run_id,
            step_id,
            step_id.split(":")[0],
            json.dumps(value),
        )
    return run_id


def executions(path: Path, run_id: str, tokens: dict[str, str]) -> None:
    with path.open("a") as log:
        for step, token in tokens.items():
            common = {"run": run_id, "step": step, "attempt": 0, "pid": 1}
            log.write(json.dumps({"kind": "start", "at": 0.0, **common}) + "\n")
            log.write(json.dumps({"kind": "end", "at": 0.0, "token": token, **common}) + "\n")


async def test_a_clean_run_has_no_findings(connection: asyncpg.Connection, tmp_path: Path) -> None:
    log = tmp_path / "steps.jsonl"
    run_id = await store(connection, "e-1", "completed", {"step-0": "a", "step-1": "b"}, ["a", "b"])
    executions(log, run_id, {"step-0": "a", "step-1": "b"})
    findings = await check.check(connection, {"e-1": event("e-1")}, {"e-1"}, log)
    assert findings.ok
    assert (findings.runs, findings.completed, findings.steps_committed) == (1, 1, 2)
    assert not findings.unknown_outputs and not findings.run_again_after_commit


async def test_each_kind_of_loss_is_found(connection: asyncpg.Connection, tmp_path: Path) -> None:
    log = tmp_path / "steps.jsonl"
    sent = {name: event(name) for name in ("lost", "stuck", "suffix", "replaced")}
    await store(connection, "stuck", "running", {"step-0": "a"}, None)
    suffixed = await store(
        connection,
        "suffix",
        "completed",
        {"step-0": "a", "step-0:1": "c", "step-1": "b"},
        ["a", "b"],
    )
    executions(log, suffixed, {"step-0": "a", "step-1": "b"})
    # The function saw "a" for step-0, but the stored output is "z".
    await store(connection, "replaced", "completed", {"step-0": "z", "step-1": "b"}, ["a", "b"])
    findings = await check.check(connection, sent, set(sent), log)
    assert not findings.ok
    assert findings.lost == ["lost"]
    assert findings.stuck == ["run-stuck (running)"]
    assert sorted(finding.split(":")[0] for finding in findings.twice) == [
        "run-replaced",
        "run-suffix/step-0",
    ]
    assert "run-replaced/step-0" in findings.unknown_outputs
