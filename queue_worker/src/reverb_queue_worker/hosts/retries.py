"""How often in a row each run found no host: its next try backs off from that count."""

from collections import OrderedDict

from reverb_store.ids import RunId


class HostRetries:
    """Consecutive unreachable-host releases per run, in this worker (bounded memory).

    The count lives in memory: another worker that picks the run up starts
    again from a short delay, which is harmless (the delay is capped anyway).
    """

    def __init__(self, limit: int = 10_000) -> None:
        self._limit = limit
        self._counts: OrderedDict[RunId, int] = OrderedDict()

    def failed(self, run_id: RunId) -> int:
        """Record one more failure; return how many came before it (0-based, for backoff)."""
        before = self._counts.pop(run_id, 0)
        self._counts[run_id] = before + 1
        while len(self._counts) > self._limit:
            self._counts.popitem(last=False)
        return before

    def reached(self, run_id: RunId) -> None:
        """The run reached a host: start over."""
        self._counts.pop(run_id, None)
