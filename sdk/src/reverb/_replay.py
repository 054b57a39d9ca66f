"""Replaying a run's memo against the function's code, offline, without running any step.

`replay` calls the function with a memo the way a host would on the run's next
invocation, but no step ever runs or reports: a memoized step returns its recorded
output (or raises its recorded error), while a step the memo does not have (new
code the real engine would run) and a step still pending (a sleep, a wait, a retry)
stop the branch of the function that reached them. The replay ends when the function
returns, raises, or waits on nothing but stopped steps. `drift` then compares the
step ids it reached with the run's recorded ones: what `reverb check` reports.
"""

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from reverb._app import FunctionDefinition
from reverb._context import Context
from reverb._errors import Interrupt
from reverb._event import Event
from reverb._logger import NULL_LOGGER
from reverb._protocol import Ack, Invocation, MemoizedStep, StepReport
from reverb._step import Steps
from reverb._step_ids import StepIds

# Event-loop turns without a new step after which a function is taken to be blocked.
_IDLE_TURNS = 20
# Turns an abandoned function gets to unwind from Interrupt before it is cancelled.
_UNWIND_TURNS = 10

Ending = Literal["returned", "raised", "stopped"]


@dataclass(frozen=True, slots=True)
class Replayed:
    """What the code did over the memo.

    reached: every step id the code reached, in the order it reached them;
    new: those the memo does not have (the engine would run them there);
    pending: those it reached that still wait (a sleep, a wait, a retry not yet due);
    ending: whether the function returned, raised (`error` names the exception), or
    stopped at new or pending steps.
    """

    reached: tuple[str, ...]
    new: tuple[str, ...]
    pending: tuple[str, ...]
    ending: Ending
    error: str | None = None


async def replay(definition: FunctionDefinition, invocation: Invocation) -> Replayed:
    """Run `definition` over `invocation.memo` without running any step (see the module)."""
    channel = _ReplayChannel(invocation.memo)
    events = invocation.events
    first = events[0] if events else Event("", "", {}, datetime.fromtimestamp(0, UTC))
    context = Context(
        event=first,
        events=events,
        run_id=invocation.run_id,
        function_id=invocation.function_id,
        attempt=invocation.attempt,
        step=Steps(channel),
        logger=NULL_LOGGER,
    )
    function = asyncio.get_running_loop().create_task(_call(definition, context))
    idle = 0
    claims = channel.claims
    while not function.done() and idle < _IDLE_TURNS:
        await asyncio.sleep(0)
        idle = idle + 1 if channel.claims == claims else 0
        claims = channel.claims
    ending: Ending = "stopped"
    error: str | None = None
    if function.done():
        outcome = function.result()
        ending = "returned" if outcome is None else "raised"
        error = outcome
    await channel.stop(function)
    return Replayed(
        tuple(channel.reached), tuple(channel.new), tuple(channel.pending), ending, error
    )


def drift(recorded: Sequence[str], replayed: Replayed) -> str | None:
    """Why the code would not reach the recorded steps (ids, in the order the run reached
    them) in the same order; None when it would."""
    reached = set(replayed.reached)
    unreached = [step_id for step_id in recorded if step_id not in reached]
    if unreached:
        if replayed.ending == "raised":
            before = f"the function raises {replayed.error} first"
        elif replayed.ending == "returned":
            before = "the function returns first"
        elif replayed.new:
            before = f"the code reaches new step(s) {_ids(replayed.new)} first"
        else:
            before = f"the code waits at {_ids(replayed.pending)} first"
        return f"recorded step(s) {_ids(unreached)} not reached: {before}"
    known = set(recorded)
    order = [step_id for step_id in replayed.reached if step_id in known]
    if order != list(recorded):
        return f"steps reached in another order: {_ids(order)}, recorded {_ids(recorded)}"
    return None


def _ids(ids: Sequence[str]) -> str:
    return ", ".join(repr(step_id) for step_id in ids)


async def _call(definition: FunctionDefinition, context: Context) -> str | None:
    """None if the function returned (or was interrupted), else its exception's name."""
    try:
        await definition.handler(context)
    except Interrupt:
        return None
    except Exception as error:
        return type(error).__name__
    return None


class _ReplayChannel:
    """A StepChannel over a memo that never runs nor reports a step."""

    def __init__(self, memo: Sequence[MemoizedStep]) -> None:
        self._memo = {entry.step_id: entry for entry in memo}
        self._ids = StepIds()
        self._blocked: list[asyncio.Future[None]] = []
        self._stopped = False
        self.claims = 0
        self.reached: list[str] = []
        self.new: list[str] = []
        self.pending: list[str] = []

    def claim(self, name: str) -> str:
        if self._stopped:
            raise Interrupt()
        self.claims += 1
        step_id = self._ids.claim(name)
        self.reached.append(step_id)
        return step_id

    def memoized(self, step_id: str) -> MemoizedStep | None:
        memo = self._memo.get(step_id)
        if memo is None:
            # A new step: the engine would run it here. Its branch waits for good.
            self.new.append(step_id)
            return MemoizedStep(step_id, pending=True)
        return memo

    def running(self, step_id: str, name: str) -> Any:
        raise Interrupt()  # unreachable: every step is memoized or pending

    async def report(self, report: StepReport) -> Ack:
        raise Interrupt()  # unreachable, as `running`

    async def pend(self, step_id: str) -> None:
        if step_id not in self.new:
            self.pending.append(step_id)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._blocked.append(future)
        await future

    async def stop(self, function: "asyncio.Task[str | None]") -> None:
        self._stopped = True
        for future in self._blocked:
            if not future.done():
                future.set_exception(Interrupt())
        for _ in range(_UNWIND_TURNS):
            if function.done():
                break
            await asyncio.sleep(0)
        if not function.done():
            function.cancel()
        await asyncio.wait((function,))
