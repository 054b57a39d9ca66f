"""Cron schedules: registration's rows (`schedules`), what a due schedule does
(`policies`), the scheduler (`firing`), and ticks fired through the API (`manual`)."""

from reverb_store.cron.firing import (
    CRON_EVENT,
    Fired,
    event_data,
    event_id,
    fire_due,
    schedule_next,
    tick_text,
)
from reverb_store.cron.manual import (
    MAX_BACKFILL,
    BackfillTooLarge,
    NoSchedule,
    Stored,
    backfill,
    trigger,
)
from reverb_store.cron.policies import CATCH_UP_LIMIT, GRACE
from reverb_store.cron.schedules import (
    ScheduleDefinition,
    ScheduleRecord,
    list_schedules,
    sync_schedules,
)

__all__ = [
    "CATCH_UP_LIMIT",
    "CRON_EVENT",
    "GRACE",
    "MAX_BACKFILL",
    "BackfillTooLarge",
    "Fired",
    "NoSchedule",
    "ScheduleDefinition",
    "ScheduleRecord",
    "Stored",
    "backfill",
    "event_data",
    "event_id",
    "fire_due",
    "list_schedules",
    "schedule_next",
    "sync_schedules",
    "tick_text",
    "trigger",
]
