"""The disruptions: kill -9 of a random worker or host (restarted at once or after a short
pause), and one PostgreSQL restart in the middle of the load."""

import asyncio
import random
import time
from dataclasses import dataclass, field

from bench.chaos.database import Database
from bench.chaos.mesh import Mesh


@dataclass
class Disruption:
    kind: str  # "kill" or "database"
    target: str
    at: float  # wall-clock time of the kill, or when the database went down
    back: float  # when the process was started again, or the database accepted again


@dataclass
class Monkey:
    mesh: Mesh
    database: Database
    chooser: random.Random
    disruptions: list[Disruption] = field(default_factory=list)
    # Processes that exited on their own and were started again, by name.
    exits: dict[str, int] = field(default_factory=dict)
    # No kill before this time.monotonic() (the database restart and its quiet time).
    _held_until: float = 0.0
    # Killed and about to be started again by _kill_one: not "exited on its own".
    _restarting: set[str] = field(default_factory=set)

    async def run(
        self, kills: int, seconds: float, restart_at: float, down: float, quiet: float
    ) -> None:
        """`kills` kills spread over `seconds`, and the database restarted `restart_at`
        seconds in (it stays down `down` seconds). No process is killed while the database
        is down nor in the `quiet` seconds after it is back, so the restart's recovery
        time is its own."""
        started = time.monotonic()
        restart = asyncio.create_task(self._restart(started + restart_at, down, quiet))
        interval = (seconds - quiet - 2 * down) / max(kills, 1)
        for number in range(kills):
            await self._until(started + interval * (number + self.chooser.uniform(0.3, 1)))
            await self._kill_one()
        await restart

    async def _restart(self, moment: float, down: float, quiet: float) -> None:
        await self._until(moment)
        self._held_until = float("inf")
        try:
            stopped, back = await asyncio.to_thread(self.database.restart, down)
        finally:
            self._held_until = time.monotonic() + quiet
        self.disruptions.append(Disruption("database", "postgresql", stopped, back))

    async def _kill_one(self) -> None:
        """Kill a random started process (waiting until one may be killed), start it again
        at once or after up to a second."""
        while time.monotonic() < self._held_until or not (candidates := self.mesh.eligible()):
            await self._until(time.monotonic() + 0.1)
        victim = self.chooser.choice(candidates)
        at = time.time()
        self._restarting.add(victim.name)
        try:
            victim.kill()
            pause = self.chooser.choice([0.0, 0.0, 0.2, 0.5, 1.0])
            if pause:
                await asyncio.sleep(pause)
            self.mesh.launch(victim)
        finally:
            self._restarting.discard(victim.name)
        self.disruptions.append(Disruption("kill", victim.name, at, time.time()))

    def revive_exited(self) -> None:
        """Start again a worker or host that exited on its own (and count it: a finding)."""
        for service in self.mesh.exited():
            if service.name in self._restarting:
                continue
            self.exits[service.name] = self.exits.get(service.name, 0) + 1
            service.stop()
            self.mesh.launch(service)

    async def _until(self, moment: float) -> None:
        """Wait until `moment` (time.monotonic()), starting again, every 0.1 s, any process
        that exited on its own meanwhile."""
        while (remaining := moment - time.monotonic()) > 0:
            self.revive_exited()
            await asyncio.sleep(min(remaining, 0.1))
        self.revive_exited()
