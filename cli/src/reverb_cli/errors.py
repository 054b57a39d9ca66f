"""The one error the CLI shows to users: `error: <message>` on stderr, exit status 1."""

from typing import IO, Any

import click


class CliError(click.ClickException):
    """A user-facing failure: bad input, an API error, an unreachable server."""

    exit_code = 1

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True, file=file)


class ConfigurationError(CliError):
    """A service that must not start as configured (e.g. a host without a signing key):
    exit status 2."""

    exit_code = 2
