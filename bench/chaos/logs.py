"""The services' logs after a chaos run: error lines and tracebacks, by message."""

from collections import Counter
from pathlib import Path

import orjson

LEVELS = {"error", "critical", "exception", "fatal"}
# Lines Python itself writes to stderr, outside the JSON logs.
MARKERS = ("Traceback (most recent call last)", "Task was destroyed but it is pending")


def errors(folder: Path) -> dict[str, Counter[str]]:
    """For each kind of service (gateway, worker, host), its error messages and their counts."""
    found: dict[str, Counter[str]] = {}
    for path in sorted(folder.glob("*.log")):
        kind = path.stem.split("-")[0]
        counts = found.setdefault(kind, Counter())
        for line in path.read_text(errors="replace").splitlines():
            message = _message(line)
            if message is not None:
                counts[message] += 1
    return found


def _message(line: str) -> str | None:
    if line.startswith("{"):
        try:
            entry = orjson.loads(line)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(entry, dict) or str(entry.get("level", "")).lower() not in LEVELS:
            return None
        text = str(entry.get("event", ""))
        detail = entry.get("exception") or entry.get("error")
        if isinstance(detail, str) and detail:
            text += ": " + detail.strip().splitlines()[-1]
        return text[:160]
    for marker in MARKERS:
        if marker in line:
            return line.strip()[:160]
    return None
