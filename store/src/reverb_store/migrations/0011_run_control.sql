-- Control over runs in flight (reverb_store.execution.cancellation, .pausing, .skips).

-- A run of a paused function that stopped (at a claim, or at a step boundary) waits in
-- `paused` until the function is resumed.
ALTER TABLE reverb.runs DROP CONSTRAINT runs_status_check;
ALTER TABLE reverb.runs ADD CONSTRAINT runs_status_check CHECK (status IN
    ('queued', 'running', 'sleeping', 'waiting', 'paused', 'completed', 'failed', 'cancelled'));

-- A run cancelled while a job drives it keeps that job's id until the job lets it go at
-- its next step boundary; until then it is listed here. The step commit looks for its
-- batch's runs in this table, which is empty nearly always: a probe costs next to
-- nothing, whatever the plan (a partial index of `runs` would leave that to statistics).
CREATE TABLE reverb.stopping_runs (
    run_id text PRIMARY KEY,
    stopped_at timestamptz NOT NULL DEFAULT now()
);

-- A paused function creates no runs and its runs stop at their next step boundary. Few
-- functions are ever paused: the fan-out and the step commit first ask whether any is
-- (one probe of this index, empty nearly always), and read runs only if one is.
ALTER TABLE reverb.functions ADD COLUMN paused_at timestamptz;
CREATE INDEX functions_paused ON reverb.functions (id) WHERE paused_at IS NOT NULL;

-- Why an event started no run of a function that listens to it (`GET /events/{id}`
-- lists them as `skipped`). A reason is a short word: `paused` here; flow control adds
-- its own. One row per (event, function): a retried fan-out records nothing twice.
CREATE TABLE reverb.event_skips (
    event_id text NOT NULL,
    function_id text NOT NULL,
    reason text NOT NULL CHECK (reason <> ''),
    skipped_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (event_id, function_id)
);
-- The skips of a function since it was paused (`resume` with `replay_skipped`).
CREATE INDEX event_skips_function ON reverb.event_skips (function_id, skipped_at);
