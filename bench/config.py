"""How much each measurement does: the full run, and the quick smoke check CI runs."""

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Sizes:
    repetitions: int
    # Ingest: single-event requests at 16 concurrent clients; 100-event batches.
    ingest_requests: int
    ingest_clients: int
    batch_requests: int
    batch_clients: int
    batch_size: int
    # Latency: a steady rate of events for a number of seconds.
    latency_rate: float
    latency_seconds: float
    # Step throughput: runs of a function of `steps` steps.
    throughput_runs: int
    throughput_steps: int
    # Sleep: runs that each sleep `sleep_seconds`.
    sleep_runs: int
    sleep_seconds: float
    fanout_functions: int
    # Bulk cancel: sleeping runs cancelled by one POST /runs/cancel.
    cancel_runs: int
    # Waits: runs waiting on distinct keys; events sent at `waits_rate`/s to resume some.
    waits_runs: int
    waits_resumed: int
    waits_rate: float
    # Flow control: one-step runs queued behind a concurrency limit of 10.
    handoff_runs: int
    # Peers: no-op jobs drained per repetition; pgbench seconds per client count.
    peer_jobs: int
    pgbench_seconds: int


FULL = Sizes(
    repetitions=5,
    ingest_requests=10_000,
    ingest_clients=16,
    batch_requests=300,
    batch_clients=4,
    batch_size=100,
    latency_rate=50.0,
    latency_seconds=10.0,
    throughput_runs=2_000,
    throughput_steps=10,
    sleep_runs=10_000,
    sleep_seconds=5.0,
    fanout_functions=50,
    cancel_runs=10_000,
    waits_runs=10_000,
    waits_resumed=500,
    waits_rate=50.0,
    handoff_runs=1_000,
    peer_jobs=10_000,
    pgbench_seconds=5,
)

QUICK = Sizes(
    repetitions=1,
    ingest_requests=1_000,
    ingest_clients=16,
    batch_requests=30,
    batch_clients=4,
    batch_size=100,
    latency_rate=50.0,
    latency_seconds=2.0,
    throughput_runs=100,
    throughput_steps=10,
    sleep_runs=300,
    sleep_seconds=5.0,
    fanout_functions=50,
    cancel_runs=1_000,
    waits_runs=300,
    waits_resumed=50,
    waits_rate=50.0,
    handoff_runs=200,
    peer_jobs=1_000,
    pgbench_seconds=2,
)
