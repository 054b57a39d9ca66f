"""The load: events sent through POST /events at a steady pace, each with its own id.

An event that is refused (503 while PostgreSQL is down) or whose request fails is sent
again with the same id: ids are idempotent, so a retry never makes a second event, and
an event counts as accepted only once a 202 named it.
"""

import asyncio
import random
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench.chaos.app import SLEEP_EVENT, STEPS_EVENT

Event = dict[str, Any]


def plan(runs: int, seed: int, sleeps: float = 0.2) -> list[Event]:
    """`runs` events: most start a run of 3–8 steps, a fifth a run with a 1–4 s sleep."""
    chooser = random.Random(seed)
    events: list[Event] = []
    for number in range(runs):
        identifier = f"chaos-{seed}-{number:05d}"
        if chooser.random() < sleeps:
            data = {"seconds": chooser.uniform(1, 4), "pause": 0.01}
            events.append({"id": identifier, "name": SLEEP_EVENT, "data": data})
        else:
            data = {"steps": chooser.randint(3, 8), "pause": chooser.uniform(0.005, 0.05)}
            events.append({"id": identifier, "name": STEPS_EVENT, "data": data})
    return events


@dataclass
class Sender:
    http: httpx.AsyncClient
    events: list[Event]
    accepted: dict[str, float] = field(default_factory=dict)
    refused: int = 0
    failed_requests: int = 0
    # time.time() when the last event was accepted (or sending gave up).
    finished_at: float = 0.0

    async def send(self, seconds: float, *, deadline: float, tick: float = 0.1) -> None:
        """Send the events spread over `seconds`, then retry the ones not yet accepted until
        `deadline` (time.monotonic())."""
        started = time.monotonic()
        interval = seconds / max(len(self.events), 1)
        try:
            await self._send(interval, started, deadline, tick)
        finally:
            self.finished_at = time.time()

    async def _send(self, interval: float, started: float, deadline: float, tick: float) -> None:
        pending: list[Event] = []
        position = 0
        while position < len(self.events) or pending:
            due = int((time.monotonic() - started) / interval) + 1
            pending.extend(self.events[position:due])
            position = max(position, min(due, len(self.events)))
            if pending and not await self._post(pending):
                if time.monotonic() > deadline:
                    return
            else:
                pending = []
            await asyncio.sleep(tick)

    async def _post(self, batch: list[Event]) -> bool:
        try:
            response = await self.http.post("/events", json=batch)
        except httpx.HTTPError:
            self.failed_requests += 1
            return False
        if response.status_code != 202:
            self.refused += 1
            return False
        now = time.time()
        for identifier in response.json()["ids"]:
            self.accepted.setdefault(str(identifier), now)
        return True
