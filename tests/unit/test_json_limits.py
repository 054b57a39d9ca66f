"""The gateway's JSON limits, on the text: nesting depth and 64-bit integers."""

import pytest

from reverb_ingress_gateway.json_limits import MAX_DEPTH, oversized_integer, too_deep


def _nested(levels: int, opening: bytes = b"[", closing: bytes = b"]") -> bytes:
    return opening * levels + closing * levels


@pytest.mark.parametrize(
    ("text", "deep"),
    [
        (_nested(MAX_DEPTH), False),
        (_nested(MAX_DEPTH + 1), True),
        (b'{"a":' * MAX_DEPTH + b"1" + b"}" * MAX_DEPTH, False),
        (b'{"a":' * (MAX_DEPTH + 1) + b"1" + b"}" * (MAX_DEPTH + 1), True),
        # Many brackets, little depth; brackets inside strings do not count.
        (b"[" + b",".join([b"[[1]]"] * 1000) + b"]", False),
        (b'["' + b"[" * 500 + b'", "\\"[[[["]', False),
        (b'[{"a": [' + b"[" * (MAX_DEPTH - 2) + b"]" * (MAX_DEPTH - 2) + b"]}]", True),
    ],
)
def test_depth_is_counted_on_structure_only(text: bytes, deep: bool) -> None:
    assert too_deep(text) is deep


@pytest.mark.parametrize(
    ("text", "found"),
    [
        (b'{"n": 12345678901234567890123}', "12345678901234567890123"),
        (b"[18446744073709551616]", "18446744073709551616"),
        (b"[1, -9223372036854775809]", "-9223372036854775809"),
        (b"[18446744073709551615, -9223372036854775808]", None),
        (b'{"s": "12345678901234567890123"}', None),
        (b'{"s": "\\"12345678901234567890123\\""}', None),
        (b"[0.12345678901234567890123, 1.5e12345678901234567890, 12345678901234567890.5]", None),
        (b"[1E+12345678901234567890, 2e-12345678901234567890]", None),
        (b'["a\\\\", 123456789012345678901234]', "123456789012345678901234"),
    ],
)
def test_integers_beyond_64_bits_are_found_outside_strings(text: bytes, found: str | None) -> None:
    assert oversized_integer(text) == found
