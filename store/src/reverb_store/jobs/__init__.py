"""The pgqueuer jobs Reverb enqueues: their kinds, payloads, and the worker's own takes.

The gateway and the worker agree on these; nothing else crosses the queue.
Jobs are hints that work is due: the state they act on lives in Reverb's own
tables, so a job that finds nothing to do simply ends.

A worker may also run jobs itself, without pgqueuer's dequeue: jobs it inserts
already picked (the runs a fan-out creates), and due jobs it takes the moment it
has room or a wake-up it scheduled comes due (`take_due`; `take_due_and_next` when
its timer rang: it also turns due run wake-ups into jobs, `wakeups`, and reads the
next due time). It keeps their heartbeats fresh; if it dies, pgqueuer hands them to
another worker exactly as it does a dequeued job.
"""

from reverb_store.jobs.kinds import (
    ADVANCE_RUN,
    CRON_FIRE,
    CRON_TICK,
    KINDS,
    MATCH_WAITS,
    PROCESS_EVENT,
    TIME_OUT_RUN,
    WAKE_RUN,
    AdvanceRun,
    CronTick,
    FireCron,
    JobKind,
    JobPayload,
    KindName,
    MatchWaits,
    ProcessEvent,
    TimeoutLimit,
    TimeOutRun,
    Timing,
    kind_of,
)
from reverb_store.jobs.queue import (
    CHANNEL,
    QUEUE_TABLE,
    QueueDepth,
    TakenJob,
    Wakeups,
    depth,
    enqueue,
    keep,
    next_due,
    schedule,
    take_due,
)
from reverb_store.jobs.upkeep import vacuum_queue
from reverb_store.jobs.wakeups import promote, take_due_and_next, wake_later

__all__ = [
    "ADVANCE_RUN",
    "CHANNEL",
    "CRON_FIRE",
    "CRON_TICK",
    "KINDS",
    "MATCH_WAITS",
    "PROCESS_EVENT",
    "QUEUE_TABLE",
    "TIME_OUT_RUN",
    "WAKE_RUN",
    "AdvanceRun",
    "CronTick",
    "FireCron",
    "JobKind",
    "JobPayload",
    "KindName",
    "MatchWaits",
    "ProcessEvent",
    "QueueDepth",
    "TakenJob",
    "TimeOutRun",
    "TimeoutLimit",
    "Timing",
    "Wakeups",
    "depth",
    "enqueue",
    "keep",
    "kind_of",
    "next_due",
    "promote",
    "schedule",
    "take_due",
    "take_due_and_next",
    "vacuum_queue",
    "wake_later",
]
