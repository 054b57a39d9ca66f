"""Reverb's queue worker: fans events out to runs and drives runs through function hosts."""

from reverb_queue_worker.settings import WorkerSettings
from reverb_queue_worker.worker import Worker, run, start

__all__ = ["Worker", "WorkerSettings", "run", "start"]
