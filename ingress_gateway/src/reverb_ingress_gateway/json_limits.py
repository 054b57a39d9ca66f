"""Limits on the JSON the gateway takes: how deep it nests, and how large its integers are.

Both are checked on the JSON text, in C-speed passes over its bytes, with a
precise (slower) look only when the quick pass cannot rule a problem out:

- Nesting: arrays and objects may nest at most `MAX_DEPTH` levels (the
  outermost counts as one). Text shorter than twice that, or with no more
  opening brackets than that, cannot be deeper; otherwise its strings are
  removed and its brackets counted in order.
- Integers: an integer literal must fit in 64 bits (-2**63 to 2**64 - 1).
  orjson reads a larger one as a float, silently changing the data, so such a
  literal is refused rather than rounded. Only text with a run of 19 digits
  can hold one; there, each number token outside a string is read exactly.
"""

import re

# The deepest nesting of arrays and objects accepted in event data (documented in README).
MAX_DEPTH = 128

_INTEGER_LOW = -(2**63)
_INTEGER_HIGH = 2**64 - 1
_OPENING = frozenset(b"[{")
# Every byte but the four brackets, deleted to leave a document's structure.
_NOT_BRACKETS = bytes(byte for byte in range(256) if byte not in b"[]{}")
# Digits become "0", everything else ".": a long integer is then a run of zeros.
_DIGITS_AS_ZERO = bytes(48 if 48 <= byte <= 57 else 46 for byte in range(256))
_LONG_RUN = b"0" * 19
# A JSON string (skipped), or a number with 19 or more digits before any fraction or exponent.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_STRING_OR_LONG_NUMBER = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|(?<![\w.+-])-?\d{19,}(?![\w.])')


def too_deep(text: bytes) -> bool:
    """Whether the JSON `text` (valid JSON) nests arrays and objects past MAX_DEPTH."""
    # Each level takes two bytes; then, each level takes an opening bracket.
    if len(text) <= 2 * MAX_DEPTH or text.count(b"[") + text.count(b"{") <= MAX_DEPTH:
        return False
    structure = _STRING.sub(b"", text).translate(None, _NOT_BRACKETS)
    depth = 0
    for byte in structure:
        if byte in _OPENING:
            depth += 1
            if depth > MAX_DEPTH:
                return True
        else:
            depth -= 1
    return False


def oversized_integer(text: bytes) -> str | None:
    """The first integer literal in the JSON `text` (valid JSON) beyond 64 bits, or None."""
    if _LONG_RUN not in text.translate(_DIGITS_AS_ZERO):
        return None
    for match in _STRING_OR_LONG_NUMBER.finditer(text):
        token = match.group()
        if token.startswith(b'"'):
            continue
        if not _INTEGER_LOW <= int(token) <= _INTEGER_HIGH:
            return token.decode()
    return None


def depth_problem() -> str:
    return f"is nested too deeply: at most {MAX_DEPTH} levels of arrays and objects"


def integer_problem(literal: str) -> str:
    shown = literal if len(literal) <= 40 else f"{literal[:20]}…{literal[-8:]}"
    return (
        f"holds the integer {shown}, beyond 64 bits (-2^63 to 2^64-1), which would lose"
        " precision: send it as a string"
    )
