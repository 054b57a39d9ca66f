"""The chaos run's figures: one table on the terminal, the same in JSON."""

import argparse
import statistics
from collections import Counter
from typing import Any

import orjson

from bench.chaos import recovery
from bench.chaos.check import Findings
from bench.chaos.kills import Monkey
from bench.chaos.load import Sender

SAMPLES = 10  # ids shown for each kind of finding


def figures(
    options: argparse.Namespace,
    findings: Findings,
    monkey: Monkey,
    sender: Sender,
    load: tuple[float, float],
    settled: float,
    errors: dict[str, Counter[str]],
) -> dict[str, Any]:
    commits = sorted(findings.commit_times)
    kills = [each for each in monkey.disruptions if each.kind == "kill"]
    restarts = [each for each in monkey.disruptions if each.kind == "database"]
    rate = recovery.usual_rate(commits, load[0], load[1])
    end = max(load[1], commits[-1] if commits else load[1])
    after_kills = [recovery.recovery(commits, each.at, rate, end) for each in kills]
    last_kill = after_kills[-1] if after_kills else None
    back = [each.usual_rate for each in after_kills if each.usual_rate is not None]
    database = [
        {
            "down_seconds": each.back - each.at,
            **_recovery(recovery.recovery(commits, each.back, rate, end)),
        }
        for each in restarts
    ]
    return {
        "ok": findings.ok,
        "seed": options.seed,
        "settings": {
            "runs": options.runs,
            "kills": options.kills,
            "load_seconds": options.seconds,
            "workers": options.workers,
            "hosts": options.hosts,
            "settle_seconds": options.settle,
        },
        "events": {
            "sent": len(sender.events),
            "accepted": findings.accepted,
            "stored": findings.stored,
            "refused_requests": sender.refused,
            "failed_requests": sender.failed_requests,
        },
        "runs": {
            "started": findings.runs,
            "completed": findings.completed,
            "failed": findings.failed,
            "settled_seconds": settled,
        },
        "steps": {
            "committed": findings.steps_committed,
            "executions": findings.step_executions,
            "run_again_before_commit": findings.run_again_before_commit,
        },
        "lost": _findings(findings.lost),
        "stuck": _findings(findings.stuck),
        "twice": _findings(findings.twice),
        "run_again_after_commit": _findings(findings.run_again_after_commit),
        "unknown_outputs": _findings(findings.unknown_outputs),
        "disruptions": {
            "kills": len(kills),
            "kills_after_load": sum(each.at > load[1] for each in kills),
            "killed": dict(Counter(each.target.split("-")[0] for each in kills)),
            "database_restarts": len(restarts),
            "exited_on_their_own": monkey.exits,
            "timeline": [
                {
                    "kind": each.kind,
                    "target": each.target,
                    "at_seconds": round(each.at - load[0], 3),
                    "back_after_seconds": round(each.back - each.at, 3),
                }
                for each in monkey.disruptions
            ],
        },
        "recovery": {
            "usual_commits_per_second": rate / recovery.WINDOW,
            "after_last_kill": _recovery(last_kill) if last_kill else None,
            "after_kills_median_seconds": statistics.median(back) if back else None,
            "after_kills_max_seconds": max(back) if back else None,
            "after_database_restart": database,
            "longest_commit_gap_seconds": recovery.longest_gap(commits, load[0], end),
            # Step commits in each second from the start of the load to the last commit.
            "commits_per_second": recovery.histogram(commits, load[0], end),
        },
        "log_errors": {
            kind: {"total": sum(counts.values()), "top": dict(counts.most_common(8))}
            for kind, counts in errors.items()
        },
    }


def _findings(items: list[str]) -> dict[str, Any]:
    return {"count": len(items), "samples": items[:SAMPLES]}


def _recovery(value: recovery.Recovery) -> dict[str, float | None]:
    return {
        "first_commit_seconds": value.first_commit,
        "usual_rate_seconds": value.usual_rate,
    }


def dumps(figures: dict[str, Any]) -> str:
    return orjson.dumps(figures, option=orjson.OPT_INDENT_2).decode() + "\n"


def _seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f} s"


def table(figures: dict[str, Any]) -> str:
    events, runs, steps = figures["events"], figures["runs"], figures["steps"]
    disruptions, again = figures["disruptions"], figures["recovery"]
    rows: list[tuple[str, str, str]] = [
        (
            "events accepted",
            f"{events['accepted']} of {events['sent']}",
            f"{events['refused_requests']} refused, {events['failed_requests']} failed requests",
        ),
        (
            "runs",
            f"{runs['completed']} completed, {runs['failed']} failed",
            f"settled in {runs['settled_seconds']:.1f} s",
        ),
        (
            "kill -9",
            str(disruptions["kills"]),
            ", ".join(f"{k}: {v}" for k, v in sorted(disruptions["killed"].items()))
            + f"; {disruptions['kills_after_load']} after the last event was sent",
        ),
        ("PostgreSQL restarts", str(disruptions["database_restarts"]), ""),
        (
            "exited on their own",
            str(sum(disruptions["exited_on_their_own"].values())),
            ", ".join(f"{k}: {v}" for k, v in disruptions["exited_on_their_own"].items()),
        ),
        ("lost events", _mark(figures["lost"]["count"]), "accepted (202) but no run"),
        ("stuck runs", _mark(figures["stuck"]["count"]), "not finished when settling ended"),
        ("steps recorded twice", _mark(figures["twice"]["count"]), ""),
        (
            "run again after commit",
            str(figures["run_again_after_commit"]["count"]),
            f"{steps['run_again_before_commit']} before commit (allowed)",
        ),
        (
            "unknown step outputs",
            str(figures["unknown_outputs"]["count"]),
            "committed output no execution returned",
        ),
        ("steps", f"{steps['committed']} committed", f"{steps['executions']} executions"),
    ]
    last = again["after_last_kill"]
    if last:
        rows.append(
            (
                "recovery after last kill",
                _seconds(last["usual_rate_seconds"]),
                f"first commit after {_seconds(last['first_commit_seconds'])}",
            )
        )
    if again["after_kills_median_seconds"] is not None:
        rows.append(
            (
                "recovery after a kill",
                _seconds(again["after_kills_median_seconds"]),
                f"median; max {_seconds(again['after_kills_max_seconds'])}",
            )
        )
    for restart in again["after_database_restart"]:
        rows.append(
            (
                "recovery after DB restart",
                _seconds(restart["usual_rate_seconds"]),
                f"down {restart['down_seconds']:.1f} s; first commit after "
                f"{_seconds(restart['first_commit_seconds'])}",
            )
        )
    rows.append(
        (
            "longest commit gap",
            _seconds(again["longest_commit_gap_seconds"]),
            f"usual rate {again['usual_commits_per_second']:.0f} steps/s",
        )
    )
    for kind, errors in figures["log_errors"].items():
        rows.append((f"error lines: {kind}", str(errors["total"]), ""))
    width = max(len(row[0]) for row in rows)
    middle = max(len(row[1]) for row in rows)
    lines = [f"{a:<{width}}  {b:<{middle}}  {c}".rstrip() for a, b, c in rows]
    lines.append("")
    lines.append("PASS" if figures["ok"] else "FAIL: lost, stuck or twice is not 0")
    return "\n".join(lines)


def _mark(count: int) -> str:
    return f"{count}" if count == 0 else f"{count}  FAIL"
