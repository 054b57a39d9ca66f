"""The engine under test for the whole run: its processes and a database observer."""

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from bench.engine import cluster
from bench.engine.app import FANOUT_FUNCTIONS
from bench.engine.cluster import Cluster
from bench.engine.observe import STATS_FLUSH_SECONDS, Observer

FUNCTIONS = 8 + FANOUT_FUNCTIONS


@dataclass
class Engine:
    cluster: Cluster
    observer: Observer
    # time.monotonic() of the last load the bench put on the engine.
    last_load: float = field(default_factory=time.monotonic)

    @classmethod
    async def start(
        cls,
        database_url: str,
        environment: Mapping[str, str | None] | None = None,
        *,
        # A 2-core machine shared with other work can take over a minute to start three
        # services and register 58 functions.
        within: float = 180,
        prefixes: Mapping[str, Sequence[str]] | None = None,
    ) -> "Engine":
        started = await cluster.start(
            database_url, FUNCTIONS, within, extra_environment=environment, prefixes=prefixes
        )
        try:
            observer = await Observer.connect(database_url)
        except BaseException:
            await started.stop()
            raise
        return cls(started, observer)

    async def stop(self) -> None:
        await self.observer.close()
        await self.cluster.stop()

    def touched(self) -> None:
        self.last_load = time.monotonic()

    async def quiet_statistics(self) -> None:
        """Wait until the engine's backends have flushed the statistics of earlier load."""
        remaining = self.last_load + STATS_FLUSH_SECONDS - time.monotonic()
        if remaining > 0:
            await asyncio.sleep(remaining)
