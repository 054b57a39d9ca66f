"""Whether the gateway can serve: the database answers, and every required app is registered.

`/healthz` asks `check()` on each request; the gRPC server's health reporter asks it
every `health_check_interval` seconds and sets the gRPC health service's status from it,
so that health `Check` answers at once and `Watch` sees every change. A change is logged once,
not on every check.
"""

from typing import cast

import asyncpg
import structlog

from reverb_ingress_gateway.settings import GatewaySettings
from reverb_store import control as store

logger = structlog.get_logger("reverb.ingress_gateway")


class Health:
    """`check()`: None while healthy, else what is wrong (a 503's message)."""

    def __init__(self, pool: asyncpg.Pool, settings: GatewaySettings) -> None:
        self._pool = pool
        self._timeout = settings.database_timeout
        self._waiting = sorted(set(settings.gateway_required_apps))
        self._problem: str | None = None

    async def check(self) -> str | None:
        """Ping the database and look for the required apps not yet registered."""
        try:
            async with self._pool.acquire(timeout=self._timeout) as pooled:
                connection = cast(asyncpg.Connection, pooled)
                await connection.fetchval("SELECT 1", timeout=self._timeout)
                if self._waiting:
                    # Apps are not unregistered while a gateway runs: once seen, never asked again.
                    registered = await store.registered_apps(connection, self._waiting)
                    self._waiting = [app for app in self._waiting if app not in registered]
        except Exception as error:
            return self._report("the database is unreachable", repr(error))
        if self._waiting:
            return self._report(f"waiting for {_apps(self._waiting)} to register", None)
        return self._report(None, None)

    def _report(self, problem: str | None, error: str | None) -> str | None:
        if problem != self._problem:
            if problem is None:
                logger.info("healthy")
            elif error is None:  # waiting for an app: expected while starting
                logger.info("not healthy yet", problem=problem)
            else:
                logger.warning("unhealthy", problem=problem, error=error)
            self._problem = problem
        return problem


def _apps(names: list[str]) -> str:
    if len(names) == 1:
        return f"app {names[0]}"
    return "apps " + ", ".join(names)
