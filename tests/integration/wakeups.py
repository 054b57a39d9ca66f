"""A `reverb_store.jobs.Wakeups` that remembers what it heard, for store-level tests."""

from datetime import timedelta


class Heard:
    """The delays of the delayed jobs a call scheduled, in order."""

    def __init__(self) -> None:
        self.delays: list[timedelta] = []

    def wake_in(self, delay: timedelta) -> None:
        self.delays.append(delay)
