"""`reverb keys create NAME` / `reverb keys revoke ID`: API keys, straight in the database."""

import asyncio

import click

from reverb_cli.database import connect
from reverb_cli.errors import CliError
from reverb_cli.settings import DatabaseSettings, build
from reverb_store.control.api_keys import create_api_key, revoke_api_key


@click.group()
def keys() -> None:
    """Manage API keys (needs REVERB_DATABASE_URL)."""


@keys.command()
@click.argument("name")
def create(name: str) -> None:
    """Create an API key named NAME; print its id and the key (shown only this once)."""
    settings = build(DatabaseSettings)
    key_id, key = asyncio.run(_create(settings.database_url, name))
    click.echo(f"id   {key_id}")
    click.echo(f"key  {key}")
    click.echo(
        "Store the key now: Reverb keeps only its hash. Clients send it as "
        "`authorization: Bearer <key>` (REVERB_API_KEY for the CLI and hosts).",
        err=True,
    )


@keys.command()
@click.argument("key_id", metavar="ID")
def revoke(key_id: str) -> None:
    """Revoke the API key with this id."""
    settings = build(DatabaseSettings)
    if not asyncio.run(_revoke(settings.database_url, key_id)):
        raise CliError(f"no live API key with id {key_id!r}")
    click.echo(f"revoked {key_id}")


async def _create(database_url: str, name: str) -> tuple[str, str]:
    async with connect(database_url) as connection:
        return await create_api_key(connection, name)


async def _revoke(database_url: str, key_id: str) -> bool:
    async with connect(database_url) as connection:
        return await revoke_api_key(connection, key_id)
