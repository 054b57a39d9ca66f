"""What a function receives: its triggering events, its run's identity, steps and a logger."""

from dataclasses import dataclass, field

from reverb._event import Event
from reverb._logger import Logger
from reverb._step import Steps


@dataclass(frozen=True)
class Context:
    """The one argument of every function.

    `event` is the first triggering event (for a cron run, which has none, an event with
    an empty id and name); `attempt` counts from 0; `logger` writes log documents with
    the run's and the step's ids (`reverb.Logger`).
    """

    event: Event
    events: tuple[Event, ...]
    run_id: str
    function_id: str
    attempt: int
    step: Steps
    logger: Logger = field(repr=False)
