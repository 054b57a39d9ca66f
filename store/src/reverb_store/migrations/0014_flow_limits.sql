-- Flow control (reverb_store.flow): concurrency, throttling, rate limits, priority.

-- A function's flow-control options (FlowOptions' JSON document); NULL: none.
ALTER TABLE reverb.functions ADD COLUMN flow jsonb;

-- Why a queued run waits: set when a run gate holds it (the Hold's kind and, when the
-- hold ends by itself, its time), cleared when it is claimed. GET /runs/{id} waiting_on.
ALTER TABLE reverb.runs ADD COLUMN waiting_kind text, ADD COLUMN waiting_until timestamptz;

-- A concurrency key: its row's lock serializes the admissions and frees of the key.
-- `capacity` is the limit of the function that last admitted a run of it;
-- `paused_until` is set by RetryAfterError(pause_key=True).
CREATE TABLE reverb.concurrency_keys (
    key text PRIMARY KEY,
    capacity integer NOT NULL CHECK (capacity > 0),
    paused_until timestamptz
);

-- The runs executing under a key (one row per run and key).
CREATE TABLE reverb.concurrency_slots (
    key text NOT NULL,
    run_id text NOT NULL,
    PRIMARY KEY (key, run_id)
);
CREATE INDEX concurrency_slots_run ON reverb.concurrency_slots (run_id);

-- The runs held for a slot of a key, woken in `rank` order (created_at less the
-- priority's seconds of advance).
CREATE TABLE reverb.concurrency_queue (
    key text NOT NULL,
    run_id text NOT NULL,
    rank timestamptz NOT NULL,
    PRIMARY KEY (key, run_id)
);
CREATE INDEX concurrency_queue_rank ON reverb.concurrency_queue (key, rank, run_id);

-- Throttle keys: the GCRA's theoretical arrival time (the next start's slot).
CREATE TABLE reverb.throttle_keys (
    key text PRIMARY KEY,
    tat timestamptz NOT NULL
);

-- Rate-limit keys: the start times within the last period (a sliding window).
CREATE TABLE reverb.rate_limit_keys (
    key text PRIMARY KEY,
    starts timestamptz[] NOT NULL
);

-- A run a throttle or rate limit let through (at `at`: a throttled run's start time),
-- kept until the run ends so that a run held by a later gate is not counted twice.
CREATE TABLE reverb.flow_passes (
    run_id text NOT NULL,
    gate text NOT NULL,
    at timestamptz NOT NULL,
    PRIMARY KEY (run_id, gate)
);
