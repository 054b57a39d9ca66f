"""Resident memory of processes (psutil), for the sleep measurement and the machine's size.

psutil ships no type stubs and the workspace installs none, so it is imported
dynamically and wrapped in these typed functions.
"""

import importlib
from typing import Any

_psutil: Any = importlib.import_module("psutil")


def resident(pid: int) -> int:
    """Resident set size (bytes) of process `pid` and all its descendants."""
    process = _psutil.Process(pid)
    family = [process, *process.children(recursive=True)]
    return sum(int(each.memory_info().rss) for each in family)


def total() -> int:
    """The machine's physical memory in bytes."""
    return int(_psutil.virtual_memory().total)
