-- Log documents (the PostgreSQL log sink, REVERB_LOG_SINK=postgres): one row per notable
-- moment of an event or a run, and per user log line (`ctx.logger`). Written in batches by
-- COPY, off the runs' critical path (reverb_store.logs); read by the logs API.
--
-- The order of every listing is (ts, id): the primary key, so a page is one index range
-- and a cursor is the last (ts, id) seen. Rows are deleted by age (REVERB_LOG_RETENTION_DAYS),
-- in batches, from the front of that index.
CREATE TABLE reverb.logs (
    ts timestamptz NOT NULL,
    -- Random (63 bits): breaks ties between documents of the same microsecond.
    id bigint NOT NULL,
    level text NOT NULL CHECK (level IN ('debug', 'info', 'warning', 'error')),
    -- What happened: 'event.received', 'run.started', 'step.completed', ..., 'user'.
    kind text NOT NULL,
    message text NOT NULL,
    event_id text,
    event_name text,
    run_id text,
    function_id text,
    step_id text,
    attempt integer,
    -- {"type", "message", "stack"} when the moment is a failure.
    error jsonb,
    -- A user log line's keyword arguments (a JSON object).
    fields jsonb,
    trace_id text,
    span_id text,
    PRIMARY KEY (ts, id)
);
-- Every log of one run, in order (GET /logs/functions/{run_id}).
CREATE INDEX logs_run ON reverb.logs (run_id, ts, id) WHERE run_id IS NOT NULL;
-- Errors and dead letters (GET /logs/errors, /logs/dead-letter): few rows, a small index.
CREATE INDEX logs_errors ON reverb.logs (ts, id) WHERE level = 'error';
