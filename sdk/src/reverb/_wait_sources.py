"""The literal expressions of a function's waits, read from its source at declaration.

Waits are calls inside the function's code, so registration cannot see them by running
it. `literal_waits` parses the function's source (`inspect.getsource`, `ast`) and lists,
for each `step.wait_for_event(...)`, `wait_for_any(...)`, `wait_for_all(...)` and
`reverb.Wait(...)` call, its `match` and `if_` when they are string literals, with the
step id when that is a literal too. The app's registration carries them
(`FunctionDefinition.waits`), and the gateway refuses a bad one naming the function and
the step. Anything not literal (a variable, an f-string, a wait built elsewhere) is left
to the check the worker makes when the step runs; so is a function whose source cannot
be read (defined in a REPL, compiled from a string).
"""

import ast
import inspect
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

_WAIT_STEPS = frozenset({"wait_for_event", "wait_for_any", "wait_for_all"})


@dataclass(frozen=True, slots=True)
class WaitExpression:
    """One wait's literal `match` and `if_` (None: absent or not a literal), and its step
    id when literal."""

    step_id: str | None
    match: str | None
    if_: str | None


def literal_waits(handler: Callable[..., Any]) -> tuple[WaitExpression, ...]:
    """The literal expressions of the waits in `handler`'s source, in source order."""
    try:
        source = textwrap.dedent(inspect.getsource(handler))
        tree = ast.parse(source)
    except (OSError, TypeError, SyntaxError):
        return ()
    found: list[tuple[tuple[int, int], WaitExpression]] = []
    inside_steps: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _called(node) in _WAIT_STEPS:
            step_id = _literal(node.args[0] if node.args else _keyword(node, "id"))
            if _called(node) == "wait_for_event":
                found.append((_at(node), _expression(node, step_id)))
            for wait in _wait_calls(node):
                inside_steps.add(id(wait))
                found.append((_at(wait), _expression(wait, step_id)))
    for wait in _all_wait_calls(tree):
        if id(wait) not in inside_steps:
            found.append((_at(wait), _expression(wait, None)))
    found.sort(key=lambda item: item[0])
    return tuple(dict.fromkeys(wait for _, wait in found if wait.match or wait.if_))


def _at(node: ast.expr) -> tuple[int, int]:
    return node.lineno, node.col_offset


def _called(call: ast.Call) -> str | None:
    function = call.func
    if isinstance(function, ast.Attribute):
        return function.attr
    if isinstance(function, ast.Name):
        return function.id
    return None


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((item.value for item in call.keywords if item.arg == name), None)


def _literal(node: ast.expr | None) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def _expression(call: ast.Call, step_id: str | None) -> WaitExpression:
    # reverb.Wait(event, match, if_) also takes them by position.
    positional = call.args if _is_wait(call) else []
    match = positional[1] if len(positional) > 1 else _keyword(call, "match")
    condition = positional[2] if len(positional) > 2 else _keyword(call, "if_")
    return WaitExpression(step_id, _literal(match), _literal(condition))


def _is_wait(node: ast.AST) -> bool:
    return isinstance(node, ast.Call) and _called(node) == "Wait"


def _wait_calls(step: ast.Call) -> Iterator[ast.Call]:
    """The `Wait(...)` calls written in a wait step's arguments."""
    for argument in [*step.args, *(item.value for item in step.keywords)]:
        for node in ast.walk(argument):
            if isinstance(node, ast.Call) and _is_wait(node):
                yield node


def _all_wait_calls(tree: ast.AST) -> Iterator[ast.Call]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _is_wait(node):
            yield node
