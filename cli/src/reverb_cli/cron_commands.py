"""`reverb cron trigger FN` and `reverb cron backfill FN --from --to`: fire a function's
cron schedule by hand (POST /functions/{id}/schedule/trigger and /schedule/backfill)."""

from urllib.parse import quote

import click

from reverb_cli.client import ApiClient
from reverb_cli.settings import ClientSettings, build


@click.group()
def cron() -> None:
    """Fire a function's cron schedule now, or backfill a range of its ticks."""


@cron.command()
@click.argument("function_id", metavar="FN")
def trigger(function_id: str) -> None:
    """Fire a tick of FN's schedule now (overlap does not apply); print its event id."""
    with _client() as client:
        body = client.post(f"{_schedule(function_id)}/trigger", {})
    for event_id in body["ids"]:
        click.echo(event_id)


@cron.command()
@click.argument("function_id", metavar="FN")
@click.option("--from", "start", required=True, help="The range's first instant (ISO time).")
@click.option("--to", "end", required=True, help="The range's last instant, included.")
def backfill(function_id: str, start: str, end: str) -> None:
    """Run every tick of FN's schedules from --from to --to once (ticks already run are
    skipped); print each new tick's event id."""
    with _client() as client:
        body = client.post(f"{_schedule(function_id)}/backfill", {"from": start, "to": end})
    for event_id in body["ids"]:
        click.echo(event_id)
    click.echo(f"{len(body['ids'])} ticks started, {body['already_run']} had run already", err=True)


def _schedule(function_id: str) -> str:
    return f"/functions/{quote(function_id, safe='')}/schedule"


def _client() -> ApiClient:
    return ApiClient(build(ClientSettings))
