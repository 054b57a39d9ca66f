"""`reverb logs`: the log documents, oldest first, from GET /logs; `--follow` keeps polling
from the answer's cursor, as `tail -f` does."""

import time
from datetime import UTC, datetime
from typing import Any

import click
import orjson

from reverb import parse_duration
from reverb_cli.client import ApiClient
from reverb_cli.render import compact_json, short_time
from reverb_cli.settings import ClientSettings, build

LEVELS = ("debug", "info", "warning", "error")


def _since(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        span = parse_duration(value)
    except (ValueError, TypeError) as error:
        raise click.BadParameter(
            f"{value!r} is not a duration such as 30s, 5m, 1h or 2d"
        ) from error
    return (datetime.now(UTC) - span).isoformat()


def log_line(item: dict[str, Any]) -> str:
    """One document on one line: time, level, kind, function, run, step, message, fields."""
    document = next(value for key, value in item.items() if key != "links")
    meta = document.get("meta") or {}
    parts = [
        short_time(document.get("timestamp")),
        f"{document.get('level', '-'):<7}",
        f"{document.get('kind', '-'):<16}",
        meta.get("function_id") or meta.get("event_name") or "-",
        meta.get("run_id") or meta.get("event_id") or "-",
    ]
    if meta.get("step_id"):
        parts.append(f"[{meta['step_id']}]")
    parts.append(document.get("message", ""))
    if document.get("fields"):
        parts.append(compact_json(document["fields"]))
    error = meta.get("error")
    if error:
        parts.append(f"({error.get('type')}: {error.get('message')})")
    return "  ".join(str(part) for part in parts)


@click.command()
@click.option("--follow", "-f", is_flag=True, help="Keep printing new logs as they come.")
@click.option("--run", "run_id", default=None, help="Only the logs of this run.")
@click.option("--level", type=click.Choice(LEVELS), default=None, help="This level and above.")
@click.option("--since", default=None, help="Only logs from this long ago: 30s, 5m, 1h, 2d.")
@click.option("--limit", type=click.IntRange(1, 500), default=100, show_default=True)
@click.option(
    "--interval",
    type=click.FloatRange(0.05, 60),
    default=1.0,
    show_default=True,
    help="Seconds between polls with --follow.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON item per line.")
def logs(
    follow: bool,
    run_id: str | None,
    level: str | None,
    since: str | None,
    limit: int,
    interval: float,
    as_json: bool,
) -> None:
    """Print log documents, oldest first."""
    params: dict[str, str | int] = {"limit": limit}
    for key, value in (("run", run_id), ("level", level), ("startTime", _since(since))):
        if value is not None:
            params[key] = value
    with ApiClient(build(ClientSettings)) as client:
        printed = False
        while True:
            body = client.get("/logs", params)
            for item in body["logs"]:
                printed = True
                click.echo(orjson.dumps(item).decode() if as_json else log_line(item))
            if body.get("cursor"):
                params["cursor"] = body["cursor"]
            if body["links"].get("next"):
                continue  # more at once: no wait
            if not follow:
                break
            time.sleep(interval)
        if not printed and not as_json:
            click.echo("no logs")
