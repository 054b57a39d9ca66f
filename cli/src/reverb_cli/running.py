"""Running one service in the foreground until SIGINT or SIGTERM, with readable failures."""

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable

import asyncpg

from reverb_cli.errors import CliError


def run_until_signalled(name: str, main: Callable[[], Awaitable[None]]) -> None:
    """Run `main()` until it returns or the process gets SIGINT/SIGTERM (then cancel it,
    which lets the service stop cleanly). Environment problems become a `CliError`."""
    try:
        asyncio.run(_until_signalled(main))
    except OSError as error:
        raise CliError(f"{name} stopped: {error}") from None
    except asyncpg.UndefinedTableError as error:
        raise CliError(f"{name} stopped: {error} (run `reverb migrate` first)") from None
    except asyncpg.PostgresError as error:
        raise CliError(f"{name} stopped: PostgreSQL error: {error}") from None


async def _until_signalled(main: Callable[[], Awaitable[None]]) -> None:
    task = asyncio.ensure_future(main())
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for number in signals:
        loop.add_signal_handler(number, task.cancel)
    try:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    finally:
        for number in signals:
            loop.remove_signal_handler(number)
