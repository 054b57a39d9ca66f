"""The issue's targets, judged on medians and shown beside the figures (never asserted)."""

from bench.engine import cron
from bench.results import Key, Results

REVERB = "Reverb"
# Sleeping runs "cost no memory": growth per sleeping run below this is noise
# (allocator high-water marks), above it the process holds something per run.
NO_MEMORY_KIB = 0.5
# RSS moves by about a MiB of allocator high-water marks whatever the runs do: with
# fewer runs asleep at once than this, that noise alone exceeds 1 KiB per run, and the
# figure is shown but not judged (as in --quick).
MIN_SLEEPING_TO_JUDGE = 1_000


def _number(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.1f}"


def judge(results: Results) -> None:
    _throughput(results)
    _signing(results)
    _traces(results)
    _user_logs(results)
    _latency(results)
    _ingest(results)
    _sleep(results)
    _cancel(results)
    _waits(results)
    _flow(results)
    _cron(results)


def _relative(results: Results, key: Key, factor: float, other: float | None, label: str) -> None:
    value = results.median(key.section, key.system, key.figure)
    if value is None:
        return
    if other is None:
        results.judge(key, f"{label} (not measured)", None)
        return
    goal = factor * other
    results.judge(key, f"{label} = {_number(goal)}", value >= goal)


def _throughput(results: Results) -> None:
    key = Key("Step throughput", REVERB, "steps/s")
    dbos = results.median("Step throughput", "DBOS", "steps/s")
    floor = results.median("PostgreSQL floor", "pgbench", "commits/s, 16 clients")
    _relative(results, key, 10, dbos, "≥ 10× DBOS")
    _relative(results, key, 0.2, floor, "≥ 20% of pgbench at 16 clients")
    invocations = results.median("Step throughput", REVERB, "invocations/run")
    if invocations is not None:
        results.judge(
            Key("Step throughput", REVERB, "invocations/run"), "= waits + 1 = 1", invocations == 1
        )


def _share(results: Results, section: str, system: str, of: str, share: float, label: str) -> None:
    """Judge `system`'s steps/s against `of`'s in the same section (the same run)."""
    other = results.median(section, of, "steps/s")
    _relative(results, Key(section, system, "steps/s"), share, other, label)


def _signing(results: Results) -> None:
    # Issue 8: signing every worker→host call costs at most 5% of the step rate (same run).
    _share(
        results,
        "Step throughput, signed calls",
        "Reverb, signed (default)",
        "Reverb, unsigned",
        0.95,
        "≥ 95% of unsigned",
    )


def _traces(results: Results) -> None:
    # Issue 12: OTLP export on costs at most a quarter of the step rate (same run).
    _share(
        results,
        "Step throughput, OTLP export",
        "Reverb, OTLP export on",
        "Reverb, export off",
        0.75,
        "≥ 75% of export off",
    )


def _user_logs(results: Results) -> None:
    # Issue 12: one user log line per step to the PostgreSQL sink costs at most 15% of the
    # step rate with the sink off (same run); MongoDB's figure is reported, not judged.
    _share(
        results,
        "Step throughput, user logs",
        "Reverb, PostgreSQL sink, 1 log line/step",
        "Reverb, log sink off",
        0.85,
        "≥ 85% of the sink off",
    )


def _latency(results: Results) -> None:
    key = Key("Latency", REVERB, "request→first step p50")
    pgqueuer = results.median("Latency", "PgQueuer", "enqueue→start p50")
    _relative_at_most(results, key, 3, pgqueuer, "≤ 3× PgQueuer enqueue→start p50")
    p99 = results.median("Latency", REVERB, "request→first step p99")
    if p99 is not None:
        results.judge(Key("Latency", REVERB, "request→first step p99"), "< 30 ms", p99 < 30)


def _relative_at_most(
    results: Results, key: Key, factor: float, other: float | None, label: str
) -> None:
    value = results.median(key.section, key.system, key.figure)
    if value is None:
        return
    if other is None:
        results.judge(key, f"{label} (not measured)", None)
        return
    goal = factor * other
    results.judge(key, f"{label} = {goal:.1f} ms", value <= goal)


def _ingest(results: Results) -> None:
    for figure, goal, label in (
        ("events/s, 1 per request", 2_000, "≥ 2,000/s"),
        ("events/s, 100 per request", 20_000, "≥ 20,000/s"),
    ):
        value = results.median("Ingest", REVERB, figure)
        if value is not None:
            results.judge(Key("Ingest", REVERB, figure), label, value >= goal)
    # Verified webhooks (github preset) against single events, in the same run.
    single = results.median("Ingest", REVERB, "events/s, 1 per request")
    _relative(
        results,
        Key("Ingest", REVERB, "webhooks/s, github preset"),
        0.7,
        single,
        "≥ 70% of events/s, 1 per request",
    )


def _sleep(results: Results) -> None:
    invocations = results.median("Sleep", REVERB, "invocations/run")
    if invocations is not None:
        results.judge(Key("Sleep", REVERB, "invocations/run"), "= waits + 1 = 2", invocations == 2)
    sleeping = results.median("Sleep", REVERB, "most runs asleep at once") or 0
    for name in ("worker", "host"):
        figure = f"{name} RSS per sleeping run"
        value = results.median("Sleep", REVERB, figure)
        if value is None:
            continue
        label = f"≈ 0 (< {NO_MEMORY_KIB} KiB)"
        if sleeping < MIN_SLEEPING_TO_JUDGE:
            label += f" (not judged: fewer than {MIN_SLEEPING_TO_JUDGE:,} asleep at once)"
            results.judge(Key("Sleep", REVERB, figure), label, None)
        else:
            results.judge(Key("Sleep", REVERB, figure), label, value < NO_MEMORY_KIB)


def _cancel(results: Results) -> None:
    key = Key("Bulk cancel", REVERB, "bulk cancel of the sleeping runs")
    value = results.median(key.section, key.system, key.figure)
    if value is not None:
        results.judge(key, "< 5 s (10,000 runs in the full run)", value < 5)


def _waits(results: Results) -> None:
    for figure, goal, label in (
        ("event→run resumed p50", 20.0, "< 20 ms"),
        ("event→run resumed p99", 60.0, "< 60 ms"),
    ):
        value = results.median("Waits", REVERB, figure)
        if value is not None:
            results.judge(Key("Waits", REVERB, figure), label, value < goal)
    share = results.median("Waits", REVERB, "ingest with waiters / without")
    if share is not None:
        waiting = results.median("Waits", REVERB, "runs waiting") or 0
        label = "≥ 80%"
        if waiting < 10_000:
            label += " (not judged: fewer than 10,000 waiting)"
            results.judge(Key("Waits", REVERB, "ingest with waiters / without"), label, None)
        else:
            results.judge(Key("Waits", REVERB, "ingest with waiters / without"), label, share >= 80)


def _flow(results: Results) -> None:
    overhead = results.median("Flow control", REVERB, "never-binding limit overhead")
    if overhead is not None:
        key = Key("Flow control", REVERB, "never-binding limit overhead")
        results.judge(key, "<= 10% (same run)", overhead <= 10)
    handoff = results.median("Flow control", REVERB, "slot handoff p50")
    if handoff is not None:
        results.judge(Key("Flow control", REVERB, "slot handoff p50"), "< 5 ms", handoff < 5)


def _cron(results: Results) -> None:
    figure = f"{cron.FIGURE} p99"
    value = results.median("Cron", REVERB, figure)
    if value is not None:
        results.judge(Key("Cron", REVERB, figure), "< 250 ms", value < 250)
