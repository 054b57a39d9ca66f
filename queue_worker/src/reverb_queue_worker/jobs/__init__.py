"""Jobs: the pgqueuer entrypoints, what a failed job becomes, and the jobs this worker runs
itself (slots, heartbeats, wake-ups)."""
