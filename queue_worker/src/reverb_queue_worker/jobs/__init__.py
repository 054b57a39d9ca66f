"""Jobs: each kind's handler, what a failed job becomes, a running job and its wake-ups,
the worker's slots, and the jobs this worker runs itself (takes, heartbeats, the timer)."""
