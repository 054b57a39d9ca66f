"""The error tree, and the engine interrupt that user code cannot swallow."""

from datetime import UTC, datetime, timedelta

import pytest

import reverb
from reverb._errors import Interrupt
from reverb._failures import run_failure, step_failure


def test_the_tree() -> None:
    assert issubclass(reverb.NonRetriableError, reverb.ReverbError)
    assert issubclass(reverb.OutputUnserializableError, reverb.NonRetriableError)
    assert issubclass(reverb.StepArgumentError, reverb.NonRetriableError)
    assert issubclass(reverb.StepArgumentError, ValueError)
    assert issubclass(reverb.RetryAfterError, reverb.ReverbError)
    assert issubclass(reverb.StepError, reverb.ReverbError)
    assert issubclass(reverb.ReverbError, Exception)
    assert not issubclass(Interrupt, Exception)


def test_except_exception_cannot_swallow_the_interrupt() -> None:
    def user_code() -> None:
        try:
            raise Interrupt()
        except Exception:  # what careless user code does
            pytest.fail("the interrupt was swallowed")

    with pytest.raises(Interrupt):
        user_code()


def test_step_error_carries_the_step_failure() -> None:
    error = reverb.StepError("charge:1", "CardDeclined", "insufficient funds", "Traceback…")
    assert (error.step_id, error.error_type, error.message, error.stack) == (
        "charge:1",
        "CardDeclined",
        "insufficient funds",
        "Traceback…",
    )
    assert str(error) == "step 'charge:1' failed: CardDeclined: insufficient funds"


def test_retry_after_takes_a_duration_or_a_datetime() -> None:
    assert reverb.RetryAfterError("2m").delay == timedelta(minutes=2)
    when = datetime(2030, 1, 1, tzinfo=UTC)
    assert reverb.RetryAfterError(when, "maintenance").delay == when
    with pytest.raises(ValueError, match="timezone-aware"):
        reverb.RetryAfterError(datetime(2030, 1, 1))
    with pytest.raises(ValueError, match="is not a duration"):
        reverb.RetryAfterError("later")


@pytest.mark.parametrize(
    ("error", "retriable"),
    [
        (ValueError("x"), True),
        (reverb.NonRetriableError("x"), False),
        (reverb.OutputUnserializableError("x"), False),
        (reverb.StepArgumentError("x"), False),
        (reverb.StepError("s", "ValueError", "x"), False),
        (reverb.RetryAfterError(5), True),
    ],
)
def test_what_is_retried(error: Exception, retriable: bool) -> None:
    assert step_failure(error).retriable is retriable
    assert run_failure(error).retriable is retriable


def test_a_failure_records_type_message_stack_and_retry_after() -> None:
    try:
        raise reverb.RetryAfterError("30s", "rate limited")
    except reverb.RetryAfterError as error:
        failure = run_failure(error)
    assert (failure.error.type, failure.error.message) == ("RetryAfterError", "rate limited")
    assert "raise reverb.RetryAfterError" in failure.error.stack
    assert failure.retry_after == timedelta(seconds=30)


def test_retry_after_a_past_datetime_is_now() -> None:
    past = datetime(2000, 1, 1, tzinfo=UTC)
    assert step_failure(reverb.RetryAfterError(past)).retry_after == timedelta(0)
