"""A step that stops in the middle until the test lets it go: the control tests' way of
holding a run inside a step (cancel or pause it there) without sleeping."""

import asyncio
from collections import Counter


class StepGate:
    """Per run: `entered` is set when the gated step starts, and the step goes on once
    the test sets `released`. `executed` counts step executions by "run_id:step"."""

    def __init__(self) -> None:
        self._entered: dict[str, asyncio.Event] = {}
        self._released: dict[str, asyncio.Event] = {}
        self.executed: Counter[str] = Counter()

    def entered(self, run_id: str) -> asyncio.Event:
        return self._entered.setdefault(run_id, asyncio.Event())

    def released(self, run_id: str) -> asyncio.Event:
        return self._released.setdefault(run_id, asyncio.Event())

    async def hold(self, run_id: str, step: str) -> None:
        """Count the step's execution, say it entered, then wait to be released."""
        self.executed[f"{run_id}:{step}"] += 1
        self.entered(run_id).set()
        await self.released(run_id).wait()
