"""What every job handler of a worker shares."""

from dataclasses import dataclass

import asyncpg

from reverb_queue_worker.hosts.channels import HostChannels
from reverb_queue_worker.hosts.retries import HostRetries
from reverb_queue_worker.jobs.own_jobs import OwnJobs
from reverb_queue_worker.runs.checkpoints import CheckpointWriter
from reverb_queue_worker.settings import WorkerSettings
from reverb_store.execution import NO_GATES, Gates


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
