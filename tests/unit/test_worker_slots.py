"""The worker's slot account: bookings never grant more than is free, and slots booked
and not used come back whatever happens to the fan-out that booked them."""

import pytest

from reverb_queue_worker.jobs.slots import Slots


def open_slots(capacity: int, dequeued: int = 0) -> Slots:
    slots = Slots(capacity)
    slots.dequeued = lambda: dequeued
    return slots


def test_no_slot_is_free_without_a_queue_manager() -> None:
    slots = Slots(10)
    with slots.booking() as booking:
        assert booking.book(3) == 0
    assert slots.free() == 0


def test_bookings_get_at_most_the_free_slots() -> None:
    slots = open_slots(5, dequeued=2)
    with slots.booking() as first, slots.booking() as second:
        assert first.book(2) == 2
        assert second.book(4) == 1
        assert slots.free() == 0


def test_booked_slots_become_running_jobs_and_the_rest_come_back() -> None:
    slots = open_slots(4)
    with slots.booking() as booking:
        booking.book(3)
        slots.started(booking)
        slots.started(booking)
    assert (slots.running, slots.booked, slots.free()) == (2, 0, 2)
    slots.ended()
    assert slots.free() == 3


def test_a_failed_fan_out_gives_its_booking_back() -> None:
    slots = open_slots(4)
    with pytest.raises(ConnectionError), slots.booking() as booking:
        booking.book(4)
        raise ConnectionError("the database went away")
    assert slots.free() == 4


def test_a_job_cannot_start_in_a_slot_nobody_booked() -> None:
    slots = open_slots(4)
    with slots.booking() as booking, pytest.raises(RuntimeError):
        slots.started(booking)
    assert slots.running == 0
