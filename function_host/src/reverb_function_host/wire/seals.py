"""The canonical bytes of signed invocations, read from reverb.v1 messages.

What a Start's MAC covers, and what the MAC of each frame the host answers with covers
after `reverb.signing.answer_prefix` (docs/architecture.md, "Signed invocations"). The
queue worker's wire module builds the same bytes from the same messages.
"""

from typing import Any

from reverb.signing import START_DOMAIN, Canonical
from reverb_contracts.v1 import common_pb2, function_host_pb2
from reverb_function_host.authentication import StartAuth


def start_auth(message: function_host_pb2.Start) -> StartAuth | None:
    """The Start's `auth`, None when it has none."""
    if not message.HasField("auth"):
        return None
    auth = message.auth
    return StartAuth(
        auth.key_id, auth.signed_at_ms, auth.nonce, auth.app_id, auth.host_address, auth.mac
    )


def start_signed_bytes(message: function_host_pb2.Start) -> bytes:
    """What a Start's MAC covers."""
    events = Canonical(b"").integer(len(message.events))
    for event in message.events:
        events.text(event.id).text(event.name).blob(event.data)
        events.time(event.ts.seconds, event.ts.nanos)
    memo = Canonical(b"").integer(len(message.memo))
    for step in message.memo:
        memo.text(step.step_id)
        result = step.WhichOneof("result")
        if result == "error":
            error = step.error
            memo.integer(2).text(error.type).text(error.message).text(error.stack)
        elif result == "pending":
            memo.integer(3)
        else:
            memo.integer(1).blob(step.output)
    auth = message.auth
    return (
        Canonical(START_DOMAIN)
        .text(auth.key_id)
        .integer(auth.signed_at_ms)
        .blob(auth.nonce)
        .text(auth.app_id)
        .text(auth.host_address)
        .text(message.run_id)
        .text(message.function_id)
        .integer(message.attempt)
        .raw(events.digest())
        .raw(memo.digest())
        .to_bytes()
    )


def answer_content(frame: function_host_pb2.HostFrame) -> bytes:
    """A host frame's canonical content (its MAC covers the answer prefix, then this)."""
    kind = frame.WhichOneof("message") or ""
    content = Canonical(b"").text(kind)
    if kind == "step":
        step = frame.step
        content.text(step.step_id).text(step.name)
        _optional(content, step, "started_at")
        _optional(content, step, "ended_at")
        _operation_content(content, step)
    elif kind == "completed":
        content.blob(frame.completed.output)
    elif kind == "failed":
        failed = frame.failed
        _error_content(content, failed.error).integer(int(failed.retriable))
        _optional(content, failed, "retry_after")
    return content.to_bytes()


def _operation_content(content: Canonical, step: function_host_pb2.StepResult) -> None:
    op = step.WhichOneof("op") or ""
    content.text(op)
    if op == "output":
        content.blob(step.output)
    elif op == "failure":
        _error_content(content, step.failure.error).integer(int(step.failure.retriable))
        _optional(content, step.failure, "retry_after")
    elif op == "sleep":
        _optional(content, step.sleep, "wake_at")
    elif op == "invoke":
        content.text(step.invoke.function_id).blob(step.invoke.data)
        _optional(content, step.invoke, "timeout")
    elif op == "send_events":
        events = step.send_events.events
        content.integer(len(events))
        for event in events:
            content.text(event.name).blob(event.data).text(event.id)
            _optional(content, event, "ts")
    elif op == "wait_for_event":
        wait = step.wait_for_event
        content.text(wait.event).text(wait.match)
        _optional(content, wait, "timeout")


def _error_content(content: Canonical, error: common_pb2.ErrorInfo) -> Canonical:
    return content.text(error.type).text(error.message).text(error.stack)


def _optional(content: Canonical, message: Any, field: str) -> None:
    """An optional Timestamp or Duration: int64 1 and its seconds and nanos, or int64 0."""
    if message.HasField(field):
        value = getattr(message, field)
        content.integer(1).time(value.seconds, value.nanos)
    else:
        content.integer(0)
