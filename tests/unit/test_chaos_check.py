"""The chaos run's own arithmetic: what counts as a step run again after its commit, how
recovery is measured, and the app's execution file read back."""

from pathlib import Path

import pytest

from bench.chaos import app, recovery
from bench.chaos.check import Executions, reexecutions


def test_an_execution_after_the_commit_is_a_finding() -> None:
    assert reexecutions([1.0, 2.0], committed=1.5) == (1, 0)


def test_executions_before_the_commit_are_allowed_but_counted() -> None:
    assert reexecutions([1.0, 1.2, 1.4], committed=1.5) == (0, 2)
    assert reexecutions([1.0], committed=1.5) == (0, 0)


def test_no_commit_time_means_nothing_is_after_it() -> None:
    assert reexecutions([1.0, 2.0], committed=float("inf")) == (0, 1)


def test_recovery_is_measured_until_the_usual_rate_returns() -> None:
    # 10 commits a second, none between 5 s and 8 s.
    commits = [tenth / 10 for tenth in range(100) if not 50 <= tenth < 80]
    rate = recovery.usual_rate(commits, 0, 10)
    assert rate == 10
    measured = recovery.recovery(commits, 5.0, rate, until=10)
    assert measured.first_commit == pytest.approx(3.0)
    assert measured.usual_rate is not None and 3.0 < measured.usual_rate <= 3.6
    assert recovery.longest_gap(commits, 0, 10) == pytest.approx(3.1)
    assert recovery.histogram(commits, 0, 9.9)[4:9] == [10, 0, 0, 0, 10]


def test_no_recovery_within_the_load_is_none() -> None:
    measured = recovery.recovery([1.0], 2.0, rate=10, until=5)
    assert measured == recovery.Recovery(first_commit=None, usual_rate=None)


async def test_the_app_records_each_execution(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "steps.jsonl"
    monkeypatch.setenv("REVERB_CHAOS_STEP_LOG", str(log))
    first = await app.work("run-1", "step-0", 0, 0)
    second = await app.work("run-1", "step-0", 1, 0)
    executions = Executions.read(log)
    assert len(executions.starts[("run-1", "step-0")]) == 2
    assert executions.tokens[("run-1", "step-0")] == {first, second}
    assert first != second
