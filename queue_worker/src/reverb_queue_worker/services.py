"""What every job handler of a worker shares."""

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

import asyncpg

from reverb_queue_worker.hosts.channels import HostChannels
from reverb_queue_worker.hosts.retries import HostRetries
from reverb_queue_worker.jobs.own_jobs import OwnJobs
from reverb_queue_worker.metrics import WorkerMetrics
from reverb_queue_worker.runs.checkpoints import CheckpointWriter
from reverb_queue_worker.settings import WorkerSettings
from reverb_store.execution import NO_GATES, Gates, WaitKeys
from reverb_store.logs import LogWriter


class Clock(Protocol):
    """What the cron scheduler reads the time from (tests drive one)."""

    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


SYSTEM_CLOCK = SystemClock()


@dataclass(frozen=True, slots=True)
class Services:
    settings: WorkerSettings
    pool: asyncpg.Pool
    checkpoints: CheckpointWriter
    hosts: HostChannels
    host_retries: HostRetries
    own_jobs: OwnJobs
    # The run gates every run of the functions they apply to must pass (`admission`).
    gates: Gates = NO_GATES
    clock: Clock = SYSTEM_CLOCK
    # The wait keys this worker knows are stored (`execution.waits`).
    wait_keys: WaitKeys = field(default_factory=WaitKeys)
    metrics: WorkerMetrics = field(default_factory=WorkerMetrics)
    # Where log documents go (`moments`); a writer without a sink records nothing.
    logs: LogWriter = field(default_factory=lambda: LogWriter(None))
