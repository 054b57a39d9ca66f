"""Running one service in the foreground until SIGINT or SIGTERM, with readable failures."""

import asyncio
import contextlib
import gc
import signal
from collections.abc import Awaitable, Callable

import asyncpg

from reverb_cli.errors import CliError, ConfigurationError


def run_until_signalled(name: str, main: Callable[[], Awaitable[None]]) -> None:
    """Run `main()` until it returns or the process gets SIGINT/SIGTERM (then cancel it,
    which lets the service stop cleanly). Environment problems become a `CliError`."""
    # What is loaded by now (modules, protobuf descriptors, the app) lives as long as the
    # process: moved out of the collector's generations, it is not traversed again by every
    # full collection of a busy service.
    gc.freeze()
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(_until_signalled(main))
    except OSError as error:
        raise CliError(f"{name} stopped: {error}") from None
    except (
        asyncpg.InvalidAuthorizationSpecificationError,
        asyncpg.InvalidCatalogNameError,
    ) as error:
        # A bad password, an unknown role or database: the configuration is wrong.
        raise ConfigurationError(f"{name} cannot connect to PostgreSQL: {error}") from None
    except asyncpg.UndefinedTableError as error:
        raise CliError(f"{name} stopped: {error} (run `reverb migrate` first)") from None
    except asyncpg.PostgresError as error:
        raise CliError(f"{name} stopped: PostgreSQL error: {error}") from None


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop where it is installed (Linux, macOS): it halves the event loop's cost per
    message for the services, which spend most of their time in it."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


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
