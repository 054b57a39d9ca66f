"""The worker's cron jobs: firing due schedules (`cron_tick`) and starting the runs of
ticks fired through the API (`cron_fire`)."""

from reverb_queue_worker.cron.handlers import fire_cron, tick_cron

__all__ = ["fire_cron", "tick_cron"]
