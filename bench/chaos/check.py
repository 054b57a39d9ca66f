"""What the chaos run left behind, checked against what was sent and what the app recorded.

- lost: an event answered 202 that started no run (or was not even stored);
- stuck: a run not finished when the settle time ran out;
- twice: a step committed under a second id (`step-1:1`), a step the function does not have,
  or a completed run whose output differs from its committed steps' outputs (a step's
  output was replaced after the function had seen it);
- run again after commit: an execution of a step that began after that step's row was
  committed (PostgreSQL's commit timestamp). Runs again before the commit are at-least-once
  and allowed; they are counted apart.
"""

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import orjson

from bench.chaos.app import expected_steps

TERMINAL = ("completed", "failed", "cancelled")


@dataclass
class Executions:
    """The app's record of every step execution, by (run id, step id)."""

    starts: dict[tuple[str, str], list[float]] = field(default_factory=lambda: defaultdict(list))
    tokens: dict[tuple[str, str], set[str]] = field(default_factory=lambda: defaultdict(set))

    @classmethod
    def read(cls, path: Path) -> "Executions":
        executions = cls()
        if not path.exists():
            return executions
        for line in path.read_bytes().splitlines():
            if not line.strip():
                continue
            entry = orjson.loads(line)
            key = (entry["run"], entry["step"])
            if entry["kind"] == "start":
                executions.starts[key].append(float(entry["at"]))
            else:
                executions.tokens[key].add(entry["token"])
        return executions


@dataclass
class Findings:
    accepted: int = 0
    stored: int = 0
    runs: int = 0
    completed: int = 0
    failed: int = 0
    lost: list[str] = field(default_factory=list)
    stuck: list[str] = field(default_factory=list)
    twice: list[str] = field(default_factory=list)
    run_again_after_commit: list[str] = field(default_factory=list)
    run_again_before_commit: int = 0
    unknown_outputs: list[str] = field(default_factory=list)
    step_executions: int = 0
    steps_committed: int = 0
    commit_times: list[float] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.lost or self.stuck or self.twice)


async def finished(connection: asyncpg.Connection, accepted: int) -> bool:
    """Whether every accepted event's run has finished."""
    done = await connection.fetchval(
        "SELECT count(*) FROM reverb.runs WHERE status = ANY($1::text[])", list(TERMINAL)
    )
    return int(done) >= accepted


async def check(
    connection: asyncpg.Connection,
    sent: dict[str, dict[str, Any]],
    accepted: set[str],
    step_log: Path,
) -> Findings:
    findings = Findings(accepted=len(accepted))
    stored = {
        row["id"]
        for row in await connection.fetch(
            "SELECT id FROM reverb.events WHERE id = ANY($1::text[])", list(accepted)
        )
    }
    findings.stored = len(stored)
    runs = await connection.fetch(
        "SELECT id, status, event_ids[1] AS event_id, output FROM reverb.runs"
        " WHERE parent_run_id IS NULL"
    )
    findings.runs = len(runs)
    by_event = {row["event_id"]: row for row in runs}
    findings.lost = sorted(accepted - by_event.keys())
    steps: dict[str, dict[str, asyncpg.Record]] = defaultdict(dict)
    # Without track_commit_timestamp (a server not the chaos run's own) no time is known.
    tracked = await connection.fetchval("SELECT current_setting('track_commit_timestamp')")
    committed = "pg_xact_commit_timestamp(xmin)" if tracked == "on" else "NULL::timestamptz"
    for row in await connection.fetch(
        "SELECT run_id, id, kind, output #>> '{}' AS output,"
        f" {committed} AS committed FROM reverb.steps"
    ):
        steps[row["run_id"]][row["id"]] = row
    executions = Executions.read(step_log)
    findings.step_executions = sum(len(each) for each in executions.starts.values())
    for run in runs:
        _check_run(findings, run, sent.get(run["event_id"]), steps[run["id"]], executions)
    return findings


def _check_run(
    findings: Findings,
    run: asyncpg.Record,
    event: dict[str, Any] | None,
    steps: dict[str, asyncpg.Record],
    executions: Executions,
) -> None:
    status = run["status"]
    if status not in TERMINAL:
        findings.stuck.append(f"{run['id']} ({status})")
    findings.completed += status == "completed"
    findings.failed += status == "failed"
    if event is None:
        return
    expected = expected_steps(event["name"], event["data"])
    for step_id, row in steps.items():
        if row["kind"] != "run":
            continue
        if step_id not in expected:
            findings.twice.append(f"{run['id']}/{step_id}: a step the function does not have")
            continue
        findings.steps_committed += 1
        committed = _seconds(row["committed"])
        if committed != float("inf"):
            findings.commit_times.append(committed)
        key = (run["id"], step_id)
        after, before = reexecutions(executions.starts.get(key, []), committed)
        if after:
            findings.run_again_after_commit.append(
                f"{run['id']}/{step_id}: {after} execution(s) began after its commit"
            )
        findings.run_again_before_commit += before
        if row["output"] not in executions.tokens.get(key, set()):
            findings.unknown_outputs.append(f"{run['id']}/{step_id}")
    if status == "completed":
        outputs = [steps[step]["output"] if step in steps else None for step in expected]
        if orjson.loads(run["output"]) != outputs:
            findings.twice.append(f"{run['id']}: its output is not its committed steps' outputs")


def reexecutions(starts: list[float], committed: float) -> tuple[int, int]:
    """Of a step's executions (their start times), how many began after its commit (a
    bug) and how many more than one began before it (at-least-once: allowed)."""
    after = sum(start > committed for start in starts)
    return after, max(len(starts) - after - 1, 0)


def _seconds(value: datetime | None) -> float:
    """Seconds since the epoch; infinity when PostgreSQL kept no commit time (none is
    kept for rows older than track_commit_timestamp, so nothing can count as after it)."""
    return value.timestamp() if value is not None else float("inf")
