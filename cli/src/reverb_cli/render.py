"""Plain-text rendering of API objects: tables, durations, truncated JSON, run timelines."""

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import orjson

OUTPUT_WIDTH = 60
ERROR_WIDTH = 100


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns separated by two spaces; the last column is not padded."""
    widths = [len(header) for header in headers]
    for row in rows:
        for index, cell in enumerate(row):
            widths[index] = max(widths[index], len(cell))
    lines = []
    for row in [list(headers), *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def truncate(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def compact_json(value: Any) -> str:
    return orjson.dumps(value).decode()


def timestamp(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value)


def short_time(value: str | None) -> str:
    """`2025-01-31 14:03:07` in the timestamp's own zone (the API speaks UTC); the year in
    four digits, as RFC 3339 writes it (strftime's %Y drops the zeros of years below 1000)."""
    moment = timestamp(value)
    return moment.replace(tzinfo=None).isoformat(" ", "seconds") if moment else "-"


def duration(started: str | None, ended: str | None) -> str:
    start, end = timestamp(started), timestamp(ended)
    if start is None or end is None:
        return "-"
    return format_seconds((end - start).total_seconds())


def format_seconds(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {rest}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes}m"


def error_text(error: Mapping[str, Any] | None, width: int = ERROR_WIDTH) -> str:
    if not error:
        return ""
    kind, message = error.get("type") or "Error", error.get("message") or ""
    return truncate(f"{kind}: {message}" if message else kind, width)


def run_timeline(run: Mapping[str, Any]) -> str:
    """A run's header, then one line per step in order: what a person reads first."""
    lines = [
        f"run       {run['id']}",
        f"function  {run.get('function_id', '-')}",
        f"status    {run['status']}",
        f"events    {', '.join(run.get('event_ids') or []) or '-'}",
        f"attempt   {int(run.get('attempt') or 0) + 1}   invocations {run.get('invocations', 0)}",
        f"created   {short_time(run.get('created_at'))}"
        f"   duration {duration(run.get('started_at'), run.get('ended_at'))}",
    ]
    if run.get("parent_run_id"):
        lines.append(f"parent    {run['parent_run_id']}")
    if waiting := run.get("waiting_on"):
        until = f" until {short_time(waiting['until'])}" if waiting.get("until") else ""
        lines.append(f"waiting   on {waiting.get('kind', '-')}{until}")
    if run.get("status") == "completed":
        lines.append(f"output    {truncate(compact_json(run.get('output')), ERROR_WIDTH)}")
    if run.get("error"):
        lines.append(f"error     {error_text(run['error'])}")
    if cancelled := run.get("cancelled_by"):
        lines.append(
            f"cancelled by event {cancelled['event_id']} ({cancelled.get('event_name') or '-'}),"
            f" cancel_on[{cancelled.get('cancel_on', 0)}]"
        )
    steps: Sequence[Mapping[str, Any]] = run.get("steps") or []
    lines.append("")
    if not steps:
        lines.append("no steps yet")
        return "\n".join(lines)
    rows = [_step_row(step) for step in steps]
    lines.append(table(["STEP", "KIND", "STATUS", "DURATION", "ATTEMPTS", "RESULT"], rows))
    return "\n".join(lines)


def _step_row(step: Mapping[str, Any]) -> list[str]:
    status = str(step.get("status", "-"))
    result = ""
    if step.get("error"):
        result = error_text(step["error"])
    elif status == "completed" and step.get("kind") != "sleep":
        result = truncate(compact_json(step.get("output")), OUTPUT_WIDTH)
    elif step.get("wake_at"):
        result = f"until {short_time(step['wake_at'])}"
    if step.get("child_run_id"):
        result = f"run {step['child_run_id']} {result}".rstrip()
    return [
        str(step.get("id", "-")),
        str(step.get("kind", "-")),
        status,
        duration(step.get("started_at"), step.get("ended_at")),
        str(step.get("attempts", "-")),
        result,
    ]


def next_fire(function: Mapping[str, Any]) -> str | None:
    """The earliest next tick of the function's cron triggers (None: it has none)."""
    ticks = [t["next_at"] for t in function.get("triggers") or [] if t.get("next_at")]
    return min(ticks) if ticks else None  # one format, in UTC: text order is time order


def triggers_text(function: Mapping[str, Any]) -> str:
    """`event user.signed_up, cron 0 9 * * * (Europe/Paris)`."""
    described = []
    for trigger in function.get("triggers") or []:
        if trigger.get("event"):
            described.append(f"event {trigger['event']}")
        elif trigger.get("cron"):
            zone = f" ({trigger['timezone']})" if trigger.get("timezone") else ""
            described.append(f"cron {trigger['cron']}{zone}")
    return ", ".join(described) or "-"


def cancel_on_text(function: Mapping[str, Any]) -> str:
    """`order.cancelled match data.order_id if async.data.x > 1 within 30m`, per entry."""
    described = []
    for entry in function.get("cancel_on") or []:
        text = str(entry.get("event", "-"))
        if entry.get("match"):
            text += f" match {entry['match']}"
        if entry.get("condition"):
            text += f" if {entry['condition']}"
        if timeout := entry.get("timeout"):
            seconds = float(timeout.get("seconds") or 0) + int(timeout.get("nanos") or 0) / 1e9
            text += f" within {_whole(seconds)}"
        described.append(text)
    return ", ".join(described) or "-"


def _whole(seconds: float) -> str:
    """A declared duration as written: `30m`, `2h`, `90s` (else `format_seconds`)."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return format_seconds(seconds)
