"""The worker's concurrency: how many jobs it may run at once, and who holds the slots.

All of the worker's accounting is here. A slot is held by one of:

- a job pgqueuer dispatched here (`dequeued`: pgqueuer's count of its running jobs);
- a job the worker runs itself (`running`: taken from the queue, or created picked by a
  fan-out), from the moment it is started until its task ends;
- a booking: a slot a fan-out promised to a run it is creating claimed for this worker,
  from `Booking.book` until the run starts (`Booking.use`) or the booking closes.

Invariants:

- `running` and `booked` never go below zero; a booking is always closed (it is a
  context manager), which frees the slots it booked and did not use, so a fan-out
  that fails leaks none; each booked slot becomes at most one running job.
- A booking is granted at most `free()` = capacity − dequeued − running − booked (never
  below zero) at the moment it books, so bookings never overbook the slots they see.
- No slot is granted while the worker has no queue manager (`dequeued` is None): there
  is nobody to pick jobs in the name of.

Not guaranteed (the known overshoot): a take from the queue books nothing while it is
in flight. It asks for `free()` jobs; a fan-out booking meanwhile, or pgqueuer
dispatching meanwhile, sees the same free slots, so the worker may run up to that many
jobs more than its capacity until they end. (Booking the take's room while it is in
flight would make every fan-out in that window queue its runs instead of driving them:
one more claim per run, on the hot path.) pgqueuer's dequeue caps the worker's picked
rows in SQL, which count this worker's own jobs once their rows commit but not its
bookings or takes in flight.
"""

from collections.abc import Callable
from types import TracebackType


class Slots:
    """How many jobs the worker runs, against its concurrency (see the module)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        # Set while a queue manager runs: how many jobs pgqueuer runs in this worker.
        self.dequeued: Callable[[], int] | None = None
        self.running = 0
        self.booked = 0

    def free(self) -> int:
        """Slots nobody holds; none while no queue manager runs."""
        if self.dequeued is None:
            return 0
        return max(0, self.capacity - self.dequeued() - self.running - self.booked)

    def booking(self) -> "Booking":
        """A new, empty booking: `with slots.booking() as booking: booking.book(n) ...`."""
        return Booking(self)

    def started(self, booking: "Booking | None") -> None:
        """A job of the worker's own starts, in a slot of `booking` (None: a take's)."""
        if booking is not None:
            booking.use()
        self.running += 1

    def ended(self) -> None:
        """A job of the worker's own ended: its slot is free."""
        self.running -= 1


class Booking:
    """Slots booked for jobs about to start; those not used are freed when it closes."""

    __slots__ = ("_slots", "held")

    def __init__(self, slots: Slots) -> None:
        self._slots = slots
        self.held = 0

    def book(self, wanted: int) -> int:
        """Book up to `wanted` more free slots; return how many were booked."""
        granted = min(wanted, self._slots.free())
        self.held += granted
        self._slots.booked += granted
        return granted

    def use(self) -> None:
        """One booked slot is taken by the job starting in it."""
        if self.held == 0:
            raise RuntimeError("no booked slot left to use")
        self.held -= 1
        self._slots.booked -= 1

    def close(self) -> None:
        """Free the slots booked and not used."""
        self._slots.booked -= self.held
        self.held = 0

    def __enter__(self) -> "Booking":
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        self.close()
