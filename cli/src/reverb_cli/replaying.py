"""`reverb replay`: run a run's function again (POST /runs/{id}/replay), or a function's
ended runs in bulk (POST /runs/replay)."""

from typing import Any
from urllib.parse import quote

import click

from reverb_cli.client import ApiClient, data_option
from reverb_cli.errors import CliError
from reverb_cli.settings import ClientSettings, build

ENDED = ("completed", "failed", "cancelled")


@click.command()
@click.argument("run_id", metavar="[RUN_ID]", required=False)
@click.option("--from-step", default=None, help="Keep the steps before this one; run from it.")
@click.option("--data", "data_text", default=None, help="New event data (a JSON object).")
@click.option("--function", "function_id", default=None, help="Bulk: replay this function's runs.")
@click.option(
    "--status",
    type=click.Choice(ENDED),
    default=None,
    help="Bulk: runs that ended so (default failed).",
)
@click.option("--from", "created_from", default=None, help="Bulk: runs created at or after (ISO).")
@click.option("--to", "created_to", default=None, help="Bulk: runs created before (ISO time).")
def replay(
    run_id: str | None,
    from_step: str | None,
    data_text: str | None,
    function_id: str | None,
    status: str | None,
    created_from: str | None,
    created_to: str | None,
) -> None:
    """Replay RUN_ID (print the new run's id), or with --function every run of a function
    that ended in --status (failed by default) created between --from and --to (print
    each new run's id)."""
    bulk = {"function": function_id, "status": status, "from": created_from, "to": created_to}
    if run_id is None:
        if function_id is None:
            raise CliError("give a RUN_ID, or --function F for a bulk replay")
        if from_step is not None or data_text is not None:
            raise CliError("--from-step and --data replay one run: give its RUN_ID")
        with _client() as client:
            body = client.post("/runs/replay", {k: v for k, v in bulk.items() if v is not None})
        for replayed in body["run_ids"]:
            click.echo(replayed)
        click.echo(f"{body['count']} runs replayed", err=True)
        return
    if any(value is not None for value in bulk.values()):
        raise CliError("--function, --status, --from and --to make a bulk replay: no RUN_ID")
    request: dict[str, Any] = {}
    if from_step is not None:
        request["from_step"] = from_step
    if data_text is not None:
        request["data"] = data_option(data_text)
    with _client() as client:
        body = client.post(f"/runs/{quote(run_id, safe='')}/replay", request)
    click.echo(body["run_id"])


def _client() -> ApiClient:
    return ApiClient(build(ClientSettings))
