-- Flow control, how events become runs (reverb_store.execution.arrivals and the gates of
-- reverb_store.flow): debounce, idempotency, singleton and batch. The options are part of
-- `functions.flow` (0014); skipped events are `event_skips` (0011).

-- Idempotency: the event that took a key (one run per key per 24 hours). A key older
-- than that is taken over by the next event of the key; a retried fan-out of the same
-- event finds its own key and carries on.
CREATE TABLE reverb.idempotency_keys (
    function_id text NOT NULL,
    key text NOT NULL,
    event_id text NOT NULL,
    taken_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (function_id, key)
);

-- Debounce: the open window of a key, its queued run, and the latest event (by its
-- `ts`, then id: fan-outs of one key's events may run in any order). The run is held by
-- the debounce gate until `due_at`, then starts with `event_id`.
CREATE TABLE reverb.debounces (
    function_id text NOT NULL,
    key text NOT NULL,
    run_id text NOT NULL UNIQUE,
    event_id text NOT NULL,
    event_ts timestamptz NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    due_at timestamptz NOT NULL,
    PRIMARY KEY (function_id, key)
);

-- Batch: the events collected for a run. One open batch per key; a full one is closed
-- at once and its run woken; an open one is closed by its run's claim at `due_at`.
CREATE TABLE reverb.batches (
    run_id text PRIMARY KEY,
    function_id text NOT NULL,
    key text NOT NULL,
    event_ids text[] NOT NULL,
    due_at timestamptz NOT NULL,
    open boolean NOT NULL DEFAULT true
);
CREATE UNIQUE INDEX batches_open ON reverb.batches (function_id, key) WHERE open;
CREATE INDEX batches_event_ids ON reverb.batches USING gin (event_ids);

-- Singleton: every run of a singleton function not ended yet, with its key; `admitted`
-- once it holds the key (it started). Deleted when the run ends.
CREATE TABLE reverb.singletons (
    run_id text PRIMARY KEY,
    function_id text NOT NULL,
    key text NOT NULL,
    admitted boolean NOT NULL DEFAULT false
);
CREATE INDEX singletons_key ON reverb.singletons (function_id, key, run_id);
