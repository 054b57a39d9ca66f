-- A suspended run's wake-up (a sleep's end, a wait's or an invoke's timeout) is a row
-- here, not a delayed `wake_run` job in pgqueuer's queue (reverb_store.jobs.wakeups).
-- pgqueuer's dequeue reads its entrypoint's queued jobs in (priority, id) order and tests
-- each one's execute_after, so every delayed job waiting behind nothing due cost every
-- dequeue a heap read (10,000 waiting runs: ~3,800 buffers a dequeue). This table is read
-- only through its due-time index, by the worker whose timer rang: its due range, and
-- the earliest row after it.
--
-- One row per run: a run's next wake-up is the earliest `wake_at` of its steps when it
-- suspends, so a later suspension replaces the row. A row whose run moved on meanwhile
-- (an event resolved the wait) stays until due, then wakes nothing (jobs are hints).
CREATE TABLE reverb.run_wakeups (
    run_id text PRIMARY KEY,
    due_at timestamptz NOT NULL,
    traceparent text
);

CREATE INDEX run_wakeups_due ON reverb.run_wakeups (due_at);
