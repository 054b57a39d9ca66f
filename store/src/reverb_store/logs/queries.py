"""What the logs API asks a sink for: one query type, read the same way by every sink."""

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from reverb_store.logs.documents import LEVELS, Level, LogDocument


@dataclass(frozen=True, slots=True)
class Position:
    """A place in the (timestamp, id) order: a cursor points after it."""

    timestamp: datetime
    id: int


@dataclass(frozen=True, slots=True)
class LogQuery:
    """Documents in (timestamp, id) order, after `after`, from `start` (inclusive) to `end`
    (exclusive), of one run, of one event name, at `level` or above, of some kinds;
    `offset` skipped."""

    limit: int
    after: Position | None = None
    start: datetime | None = None
    end: datetime | None = None
    run_id: str | None = None
    level: Level | None = None
    kinds: tuple[str, ...] | None = None
    offset: int = 0
    event_name: str | None = None

    def levels(self) -> tuple[Level, ...] | None:
        """The levels the query keeps (None: all)."""
        if self.level is None or self.level == LEVELS[0]:
            return None
        return LEVELS[LEVELS.index(self.level) :]


class LogReader(Protocol):
    async def find(self, query: LogQuery) -> list[LogDocument]:
        """The documents the query selects, in order, at most `limit`."""
