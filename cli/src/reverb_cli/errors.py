"""The errors the CLI shows to users: `error: <message>` on stderr, no traceback.

Exit status 1 for a failure (bad input, an API error, an unreachable server), 2 for a
configuration error (a setting that is missing or malformed, a database that refuses
the credentials or does not exist), as for a command line that is wrong.
"""

from typing import IO, Any

import click


class CliError(click.ClickException):
    """A user-facing failure: bad input, an API error, an unreachable server."""

    exit_code = 1

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True, file=file)


class ConfigurationError(CliError):
    """The configuration cannot work: fix the environment, then run the command again."""

    exit_code = 2
