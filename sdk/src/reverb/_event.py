"""An event as a function sees it."""

from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class Event:
    """An event as a function sees it: `data` is its JSON object."""

    id: str
    name: str
    data: dict[str, Any]
    ts: datetime
