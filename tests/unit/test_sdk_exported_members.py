"""The public API of `reverb`, pinned (like httpx's test_exported_members)."""

import reverb


def test_exported_members() -> None:
    assert reverb.__all__ == sorted(reverb.__all__)
    assert reverb.__all__ == [
        "App",
        "Batch",
        "CancelOn",
        "Concurrency",
        "Context",
        "CronTrigger",
        "Debounce",
        "Duration",
        "Event",
        "EventTrigger",
        "FunctionDefinition",
        "Logger",
        "NonRetriableError",
        "OutputUnserializableError",
        "Priority",
        "RateLimit",
        "RetryAfterError",
        "ReverbError",
        "Singleton",
        "Step",
        "StepArgumentError",
        "StepError",
        "Steps",
        "Throttle",
        "Timeouts",
        "Trigger",
        "Wait",
        "cron",
        "event",
        "parse_duration",
    ]
    for name in reverb.__all__:
        assert getattr(reverb, name) is not None


def test_public_names_are_documented() -> None:
    for name in reverb.__all__:
        member = getattr(reverb, name)
        if callable(member) and hasattr(member, "__module__"):
            assert member.__doc__, f"reverb.{name} has no docstring"
