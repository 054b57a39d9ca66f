"""What processes use: resident memory and CPU time (psutil), with their descendants.

psutil ships no type stubs and the workspace installs none, so it is imported
dynamically and wrapped in these typed functions.
"""

import importlib
from collections.abc import Iterable
from typing import Any

_psutil: Any = importlib.import_module("psutil")


def _family(pid: int) -> list[Any]:
    process = _psutil.Process(pid)
    return [process, *process.children(recursive=True)]


def resident(pid: int) -> int:
    """Resident set size (bytes) of process `pid` and all its descendants."""
    return sum(int(each.memory_info().rss) for each in _family(pid))


def cpu_seconds(pids: Iterable[int], children: bool = True) -> float:
    """User + system CPU seconds used so far by `pids` (and descendants); gone ones count 0."""
    total = 0.0
    for pid in pids:
        try:
            family = _family(pid) if children else [_psutil.Process(pid)]
            for each in family:
                times = each.cpu_times()
                total += float(times.user + times.system)
        except _psutil.NoSuchProcess:
            continue
    return total


def total_memory() -> int:
    """The machine's physical memory in bytes."""
    return int(_psutil.virtual_memory().total)
