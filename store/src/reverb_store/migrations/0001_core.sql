-- Reverb's core tables. Timestamps are timestamptz (UTC); payloads jsonb.
-- pgqueuer's own tables are installed beside these by `reverb migrate`.
CREATE SCHEMA IF NOT EXISTS reverb;

CREATE TABLE reverb.apps (
    id text PRIMARY KEY,
    -- sha256 of the canonical JSON of the app's definitions: registration is a
    -- no-op while it is unchanged.
    definition_hash text NOT NULL,
    definition jsonb NOT NULL,
    registered_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Where the hosts serving an app listen; the newest registration is tried first.
CREATE TABLE reverb.app_hosts (
    app_id text NOT NULL REFERENCES reverb.apps (id) ON DELETE CASCADE,
    address text NOT NULL,
    registered_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (app_id, address)
);

CREATE TABLE reverb.functions (
    id text PRIMARY KEY,
    app_id text NOT NULL REFERENCES reverb.apps (id) ON DELETE CASCADE,
    name text NOT NULL,
    retries integer NOT NULL DEFAULT 4 CHECK (retries BETWEEN 0 AND 20),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE reverb.triggers (
    function_id text NOT NULL REFERENCES reverb.functions (id) ON DELETE CASCADE,
    event_name text,
    cron text,
    timezone text,
    CHECK ((event_name IS NULL) <> (cron IS NULL))
);
CREATE INDEX triggers_event_name ON reverb.triggers (event_name) WHERE event_name IS NOT NULL;

CREATE TABLE reverb.events (
    -- The sender's id (idempotency: an id is accepted once) or a UUIDv7.
    id text PRIMARY KEY,
    name text NOT NULL,
    data jsonb NOT NULL,
    ts timestamptz NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX events_received ON reverb.events (received_at DESC, id DESC);
CREATE INDEX events_name ON reverb.events (name, received_at DESC);

CREATE TABLE reverb.runs (
    -- UUIDv7: ordering by id orders by creation time.
    id text PRIMARY KEY,
    -- No foreign key: a run outlives its function's removal.
    function_id text NOT NULL,
    app_id text NOT NULL,
    status text NOT NULL CHECK (status IN
        ('queued', 'running', 'sleeping', 'waiting', 'completed', 'failed', 'cancelled')),
    event_ids text[] NOT NULL DEFAULT '{}',
    -- 0-based attempt of the current try; max_attempts = retries + 1.
    attempt integer NOT NULL DEFAULT 0,
    max_attempts integer NOT NULL,
    invocations integer NOT NULL DEFAULT 0,
    output jsonb,
    error jsonb,
    parent_run_id text REFERENCES reverb.runs (id) ON DELETE SET NULL,
    parent_step_id text,
    -- The pgqueuer job driving the run now: a retried job may take over a run
    -- its crashed predecessor left 'running'.
    job_id bigint,
    traceparent text,
    created_at timestamptz NOT NULL DEFAULT now(),
    started_at timestamptz,
    ended_at timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now()
);
-- One run per (function, triggering event): a retried fan-out job adds none.
CREATE UNIQUE INDEX runs_trigger ON reverb.runs (function_id, (event_ids[1]))
    WHERE parent_run_id IS NULL AND cardinality(event_ids) > 0;
CREATE INDEX runs_function ON reverb.runs (function_id, id DESC);
CREATE INDEX runs_status ON reverb.runs (status, id DESC);
CREATE INDEX runs_event_ids ON reverb.runs USING gin (event_ids);
CREATE INDEX runs_parent ON reverb.runs (parent_run_id) WHERE parent_run_id IS NOT NULL;

CREATE TABLE reverb.steps (
    run_id text NOT NULL REFERENCES reverb.runs (id) ON DELETE CASCADE,
    -- The step id with its occurrence suffix ("send", "send:1").
    id text NOT NULL,
    -- The id as the user wrote it.
    name text NOT NULL,
    kind text NOT NULL CHECK (kind IN ('run', 'sleep', 'invoke', 'send_event', 'wait_for_event')),
    status text NOT NULL CHECK (status IN ('completed', 'failed', 'retrying', 'sleeping', 'waiting')),
    attempts integer NOT NULL DEFAULT 1,
    output jsonb,
    error jsonb,
    -- sleeping: when it wakes; retrying: when it runs again; waiting: its timeout.
    wake_at timestamptz,
    child_run_id text,
    started_at timestamptz,
    ended_at timestamptz,
    -- Commit order: the memo is replayed in this order.
    seq bigint GENERATED ALWAYS AS IDENTITY,
    PRIMARY KEY (run_id, id)
);
CREATE INDEX steps_run_seq ON reverb.steps (run_id, seq);

-- API keys for the HTTP and gRPC APIs, stored as sha256 hex digests.
CREATE TABLE reverb.api_keys (
    id text PRIMARY KEY,
    name text NOT NULL,
    key_hash text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);
