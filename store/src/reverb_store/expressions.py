"""CEL expressions: the one expression engine of waits, cancel_on and flow control.

Users write conditions (`if_`), keys and priorities as CEL (Google's Common Expression
Language, the language Inngest uses for the same options) over named variables:
`event` (the triggering event) and, in a wait's condition, `async` (the candidate
event). The engine is PyPI `common-expression-language` (Rust bindings): it parses,
type-checks at run time and evaluates; this module only names the failures.

An expression is compiled once per source text (a bounded cache), at registration
to reject a bad one with a message naming where it came from, and again wherever it
is evaluated, which then costs a dictionary lookup.
"""

from collections.abc import Mapping
from functools import lru_cache

import cel

__all__ = ["Expression", "ExpressionError", "compile_expression"]

# Longer sources are refused before parsing: an expression is a key or a condition.
MAX_SOURCE_LENGTH = 4096


class ExpressionError(ValueError):
    """An expression that cannot be compiled, or that failed on the values it was given."""


class Expression:
    """A compiled CEL expression and the variables it may read."""

    __slots__ = ("_program", "source", "what")

    def __init__(self, program: cel.Program, source: str, what: str) -> None:
        self._program = program
        self.source = source
        self.what = what

    def evaluate(self, activation: Mapping[str, object]) -> object:
        """The expression's value over `activation` (variable name → JSON-like value).

        A missing field, a type mismatch, or any other evaluation failure raises
        `ExpressionError`, whose message names the expression's origin.
        """
        try:
            return self._program.execute(dict(activation))
        except KeyError as error:
            raise ExpressionError(f"{self.what}: no field {error} in {self.source!r}") from None
        except (TypeError, ValueError, RuntimeError, ArithmeticError) as error:
            raise ExpressionError(f"{self.what}: {_first_line(error)} in {self.source!r}") from None

    def __repr__(self) -> str:
        return f"Expression({self.source!r})"


def compile_expression(source: str, *, variables: frozenset[str], what: str) -> Expression:
    """Compile `source`, which may read only `variables`.

    `what` names the expression's origin in error messages, e.g.
    `"function 'checkout', step 'wait-paid': if_"`.
    """
    if not isinstance(source, str) or not source.strip():
        raise ExpressionError(f"{what}: the expression is empty")
    if len(source) > MAX_SOURCE_LENGTH:
        raise ExpressionError(
            f"{what}: the expression is longer than {MAX_SOURCE_LENGTH} characters"
        )
    if "\x00" in source:
        raise ExpressionError(f"{what}: the expression contains a NUL character")
    program = _compiled(source)
    if isinstance(program, str):
        raise ExpressionError(f"{what}: {program}")
    unknown = sorted(set(program.variables()) - variables - _bound_names(source, program))
    if unknown:
        allowed = ", ".join(sorted(variables)) or "none"
        raise ExpressionError(
            f"{what}: unknown variable {', '.join(unknown)} in {source!r} (allowed: {allowed})"
        )
    return Expression(program, source, what)


@lru_cache(maxsize=4096)
def _compiled(source: str) -> cel.Program | str:
    """The program for `source`, or the parser's message (cached either way)."""
    try:
        return cel.compile(source)
    except (ValueError, RuntimeError) as error:
        return _first_line(error)


def _bound_names(source: str, program: cel.Program) -> set[str]:
    """Names that comprehension macros bind (`x` in `l.exists(x, x > 1)`).

    The engine reports them as variables; a name is bound when it is the first
    argument of a macro call in the source.
    """
    names = set()
    for name in program.variables():
        for macro in ("all", "exists", "exists_one", "map", "filter"):
            if f"{macro}({name}," in source.replace(" ", ""):
                names.add(name)
    return names


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
