-- Replaying and recovering (issue 10): runs replayed from another run, failure
-- handlers, and function timeouts.

-- A replay is a new run of the same function on the same events: `replay_of` is the
-- run it replays, `replay_from_step` the step it runs from (the steps committed before
-- it were copied into the replay, with their outputs).
ALTER TABLE reverb.runs
    ADD COLUMN replay_of text,
    ADD COLUMN replay_from_step text;
CREATE INDEX runs_replay_of ON reverb.runs (replay_of) WHERE replay_of IS NOT NULL;

-- Still one run per (function, triggering event), but for replays: those share the
-- events of the run they replay. The fan-out's ON CONFLICT names this predicate.
DROP INDEX reverb.runs_trigger;
CREATE UNIQUE INDEX runs_trigger ON reverb.runs (function_id, (event_ids[1]))
    WHERE parent_run_id IS NULL AND replay_of IS NULL AND cardinality(event_ids) > 0;

-- `on_failure`: the function (registered with the app) that runs when a run of this one
-- fails for good. The timeouts: `start` from the run's creation (queued) to its first
-- invocation, `finish` from then to its end; exceeding either fails the run.
ALTER TABLE reverb.functions
    ADD COLUMN on_failure text,
    ADD COLUMN start_timeout interval CHECK (start_timeout > interval '0'),
    ADD COLUMN finish_timeout interval CHECK (finish_timeout > interval '0');
