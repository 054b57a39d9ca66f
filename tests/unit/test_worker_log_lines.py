"""What the worker keeps of a log frame, whatever a host (in any language) sent: a line it
can always store (PostgreSQL refuses NUL, MongoDB documents nested past 100 levels), cut
to the SDK's limits; a frame the SDK would never send cannot block the sink's batches."""

from datetime import UTC, datetime

import orjson
import pytest

from reverb.execution import LOG_FIELDS_LIMIT, LOG_MESSAGE_LIMIT
from reverb_queue_worker.hosts.wire import LOG_FIELDS_DEPTH, log_line

AT = datetime(2026, 12, 3, tzinfo=UTC)


def test_a_well_formed_line_is_kept_as_sent() -> None:
    line = log_line(3, "slow", AT, "charge:1", b'{"ms":1200}')
    assert (line.level, line.message, line.at, line.step_id, line.fields) == (
        "warning",
        "slow",
        AT,
        "charge:1",
        '{"ms":1200}',
    )
    assert log_line(1, "x", None, "", b"").step_id is None
    assert log_line(1, "x", None, "", b"").fields is None


@pytest.mark.parametrize("level", [0, 5, 99])
def test_an_unknown_level_is_info(level: int) -> None:
    assert log_line(level, "x", AT, "", b"").level == "info"


def test_nul_characters_are_replaced() -> None:
    line = log_line(2, "a\0b", AT, "st\0ep", b'{"k\\u0000":"v\\u0000","n":[1,"\\u0000"]}')
    assert line.message == "a\ufffdb"
    assert line.step_id == "st\ufffdep"
    assert orjson.loads(line.fields or "") == {"k\ufffd": "v\ufffd", "n": [1, "\ufffd"]}


def test_a_long_message_is_cut() -> None:
    message = log_line(2, "m" * (LOG_MESSAGE_LIMIT + 1), AT, "", b"").message
    assert len(message) == LOG_MESSAGE_LIMIT and message.endswith("…")


@pytest.mark.parametrize(
    ("fields", "why"),
    [
        (b"[1, 2]", "the fields are not a JSON object"),
        (b"{nope", "the fields are not JSON"),
        (b'{"a":' * (LOG_FIELDS_DEPTH + 1) + b"1" + b"}" * (LOG_FIELDS_DEPTH + 1), "nest"),
        (b'{"a":"' + b"x" * LOG_FIELDS_LIMIT + b'"}', "bytes of fields"),
    ],
)
def test_fields_it_cannot_keep_are_replaced_by_why(fields: bytes, why: str) -> None:
    kept = orjson.loads(log_line(2, "x", AT, "", fields).fields or "")
    assert list(kept) == ["fields_dropped"]
    assert why in kept["fields_dropped"]


def test_fields_nested_to_the_limit_are_kept() -> None:
    fields = b'{"a":' * (LOG_FIELDS_DEPTH - 1) + b"[1]" + b"}" * (LOG_FIELDS_DEPTH - 1)
    assert log_line(2, "x", AT, "", fields).fields == fields.decode()
