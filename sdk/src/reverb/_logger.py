"""`ctx.logger`: log lines that become log documents with the run's and the step's ids.

`ctx.logger.info("charged", amount=3)` hands the engine a `LogLine` (level, message,
keyword fields as a JSON object, the time, and the step whose code logged it, if any); the
host sends it to the worker, which stores it as a log document. A line is never written
twice: while the function replays over steps an earlier invocation recorded, its lines
are dropped (they were written when that code first ran).

Logging never raises into the function and never waits:
- a field value JSON cannot hold (a datetime, a Decimal, an object) is kept as its
  `repr()` (at most `REPR_LIMIT` characters);
- a message is `str(message)`, cut at `MESSAGE_LIMIT` characters;
- fields whose JSON is larger than `FIELDS_LIMIT` bytes are replaced by one field,
  `fields_dropped`, saying how large they were;
- an invocation keeps at most `LINES_LIMIT` lines: the next one says so, later ones are
  dropped.

Which step a line belongs to costs nothing to steps that never log: the logger looks for
the `Steps.run` frame on the calling task's stack; once an invocation has logged, each
`step.run` it starts also marks the task's context (`CURRENT_STEP`), so a line logged by
a task the step started (an `asyncio.gather` inside the step) is the step's too. A sync
step's thread always gets the mark (it costs a fraction of the thread hop).
"""

import sys
from collections.abc import Callable
from contextvars import ContextVar
from types import FrameType
from typing import Any, Final, Literal

from reverb import _json

Level = Literal["debug", "info", "warning", "error"]

MESSAGE_LIMIT: Final = 8_192
FIELDS_LIMIT: Final = 32 * 1024
REPR_LIMIT: Final = 1_024
LINES_LIMIT: Final = 10_000

# The step whose code runs in this context (None: none marked; see the module docstring).
CURRENT_STEP: ContextVar[str | None] = ContextVar("reverb_current_step", default=None)

Record = Callable[[Level, str, bytes | None], None]
"""Takes a line: its level, its message and its fields' JSON (None: no fields)."""


class Logger:
    """`ctx.logger`: `debug`, `info`, `warning` and `error`, each `(message, **fields)`."""

    __slots__ = ("_record",)

    def __init__(self, record: Record) -> None:
        self._record = record

    def debug(self, message: object, /, **fields: Any) -> None:
        """Log `message` at level debug, with `fields` (JSON values) beside it."""
        self._record("debug", _message(message), encode_fields(fields) if fields else None)

    def info(self, message: object, /, **fields: Any) -> None:
        """Log `message` at level info, with `fields` (JSON values) beside it."""
        self._record("info", _message(message), encode_fields(fields) if fields else None)

    def warning(self, message: object, /, **fields: Any) -> None:
        """Log `message` at level warning, with `fields` (JSON values) beside it."""
        self._record("warning", _message(message), encode_fields(fields) if fields else None)

    def error(self, message: object, /, **fields: Any) -> None:
        """Log `message` at level error, with `fields` (JSON values) beside it."""
        self._record("error", _message(message), encode_fields(fields) if fields else None)


def _ignore(level: Level, message: str, fields: bytes | None) -> None:
    """A logger that records nothing (the offline replay of `reverb check`)."""


NULL_LOGGER: Final = Logger(_ignore)


def _message(message: object) -> str:
    text = message if isinstance(message, str) else _text(message, str)
    if len(text) > MESSAGE_LIMIT:
        return text[: MESSAGE_LIMIT - 1] + "…"
    return text


def encode_fields(fields: dict[str, Any]) -> bytes:
    """`fields` as a JSON object: values JSON cannot hold are kept as their repr, and fields
    larger than FIELDS_LIMIT are replaced by one saying so."""
    try:
        encoded = _json.encode(fields)
    except _json.UnserializableError:
        encoded = _json.encode({name: _json_safe(value) for name, value in fields.items()})
    if len(encoded) > FIELDS_LIMIT:
        note = f"{len(encoded)} bytes of fields, more than the {FIELDS_LIMIT} a log line keeps"
        return _json.encode({"fields_dropped": note})
    return encoded


def _json_safe(value: object) -> object:
    try:
        _json.encode(value)
    except _json.UnserializableError:
        text = _text(value, repr)
        return text if len(text) <= REPR_LIMIT else text[: REPR_LIMIT - 1] + "…"
    return value


def _text(value: object, convert: Callable[[object], str]) -> str:
    try:
        return convert(value)
    except Exception as error:  # a broken __repr__/__str__ must not fail the function
        return f"<{type(value).__name__}: {convert.__name__}() raised {type(error).__name__}>"


def step_on_stack(run_code: object, depth: int = 64) -> str | None:
    """The id of the `Steps.run` (whose code object is `run_code`) the caller runs inside,
    found on this thread's stack within `depth` frames; None outside any step."""
    frame: FrameType | None = sys._getframe(1)
    while frame is not None and depth > 0:
        if frame.f_code is run_code:
            step_id = frame.f_locals.get("step_id")
            return step_id if isinstance(step_id, str) else None
        frame = frame.f_back
        depth -= 1
    return None
