"""What every job handler of a worker shares."""

from dataclasses import dataclass

import asyncpg

from reverb_queue_worker.checkpoints import CheckpointWriter
from reverb_queue_worker.hosts import HostChannels
from reverb_queue_worker.own_jobs import OwnJobs
from reverb_queue_worker.retries import HostRetries
from reverb_queue_worker.settings import WorkerSettings


@dataclass(frozen=True, slots=True)
class Services:
    settings: WorkerSettings
    pool: asyncpg.Pool
    checkpoints: CheckpointWriter
    hosts: HostChannels
    host_retries: HostRetries
    own_jobs: OwnJobs
