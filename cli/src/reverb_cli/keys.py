"""`reverb keys create NAME --scope … [--app ID]`, `reverb keys list`, `reverb keys revoke ID`:
API keys, straight in the database."""

import asyncio

import click

from reverb_cli import render
from reverb_cli.database import connect
from reverb_cli.errors import CliError
from reverb_cli.settings import DatabaseSettings, build
from reverb_store.control.api_keys import (
    DEFAULT_SCOPES,
    HOST,
    SCOPES,
    ApiKeyRecord,
    InvalidKeyScopes,
    check_scopes,
    create_api_key,
    list_api_keys,
    revoke_api_key,
)


@click.group()
def keys() -> None:
    """Manage API keys (needs REVERB_DATABASE_URL)."""


@keys.command()
@click.argument("name")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    type=click.Choice(SCOPES),
    help=f"What the key may do; repeat it for several (default: {', '.join(DEFAULT_SCOPES)}).",
)
@click.option(
    "--app",
    "apps",
    multiple=True,
    metavar="ID",
    help=f"An app a --scope {HOST} key may register; repeat it for several.",
)
def create(name: str, scopes: tuple[str, ...], apps: tuple[str, ...]) -> None:
    """Create an API key named NAME; print its id and the key (shown only this once).

    Scopes: ingest (send events and webhooks), read (events, runs, functions, logs),
    operate (cancel, replay, pause, backfill), admin (key management), or host alone with
    one --app or more: a key a function host registers those apps with, and nothing else.
    """
    try:
        chosen, bound = check_scopes(scopes, apps)
    except InvalidKeyScopes as error:
        raise CliError(f"{error} (see `reverb keys create --help`)") from None
    settings = build(DatabaseSettings)
    key_id, key = asyncio.run(_create(settings.database_url, name, chosen, bound))
    click.echo(f"id      {key_id}")
    click.echo(f"key     {key}")
    click.echo(f"scopes  {','.join(chosen)}")
    if bound:
        click.echo(f"apps    {','.join(bound)}")
    click.echo(
        "Store the key now: Reverb keeps only its hash. Clients send it as "
        "`authorization: Bearer <key>` (REVERB_API_KEY for the CLI and hosts).",
        err=True,
    )


@keys.command(name="list")
@click.option("--revoked", is_flag=True, help="Show revoked keys too.")
def list_keys(revoked: bool) -> None:
    """List the API keys: id, name, scopes, apps (host keys), created (never the keys)."""
    settings = build(DatabaseSettings)
    found = asyncio.run(_list(settings.database_url, revoked))
    headers = ["ID", "NAME", "SCOPES", "APPS", "CREATED"] + (["REVOKED"] if revoked else [])
    rows = [_row(record, revoked) for record in found]
    click.echo(render.table(headers, rows))


@keys.command()
@click.argument("key_id", metavar="ID")
def revoke(key_id: str) -> None:
    """Revoke the API key with this id (every gateway refuses it at once)."""
    settings = build(DatabaseSettings)
    if not asyncio.run(_revoke(settings.database_url, key_id)):
        raise CliError(f"no live API key with id {key_id!r}")
    click.echo(f"revoked {key_id}")


def _row(record: ApiKeyRecord, revoked: bool) -> list[str]:
    row = [
        record.id,
        record.name,
        ",".join(record.scopes),
        ",".join(record.apps) or "-",
        record.created_at.isoformat(timespec="seconds"),
    ]
    if revoked:
        row.append(record.revoked_at.isoformat(timespec="seconds") if record.revoked_at else "-")
    return row


async def _create(
    database_url: str, name: str, scopes: list[str], apps: list[str]
) -> tuple[str, str]:
    async with connect(database_url) as connection:
        return await create_api_key(connection, name, scopes, apps)


async def _list(database_url: str, revoked: bool) -> list[ApiKeyRecord]:
    async with connect(database_url) as connection:
        return await list_api_keys(connection, revoked=revoked)


async def _revoke(database_url: str, key_id: str) -> bool:
    async with connect(database_url) as connection:
        return await revoke_api_key(connection, key_id)
