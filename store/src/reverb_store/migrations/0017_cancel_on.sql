-- cancel_on (issue 10; reverb_store.execution.cancel_on): events that cancel a function's
-- runs, through the waits' matching index (0010) and the `match_waits` job.

-- The function's cancel_on: a JSON list of {"event", "path", "match"?, "if"?,
-- "timeout_ms"?}; NULL without (so functions without it read and hash as before).
ALTER TABLE reverb.functions ADD COLUMN cancel_on jsonb;
-- Whether any function has one: the run-creation trigger asks first (one probe).
CREATE INDEX functions_cancel_on ON reverb.functions (id) WHERE cancel_on IS NOT NULL;

-- Set on a run that has cancellation waits (by the creation trigger below), so that its
-- end deletes them; other runs pay the WHEN's test of this flag.
ALTER TABLE reverb.runs ADD COLUMN cancel_waits boolean NOT NULL DEFAULT false;

-- A cancellation wait lapses at this time (the cancel_on's timeout); NULL: never. Step
-- waits leave it NULL (their timeout is their step's `wake_at`).
ALTER TABLE reverb.waits ADD COLUMN expires_at timestamptz;

-- Who cancelled a run, when an event did (`GET /events/{id}` lists its `cancelled`).
CREATE TABLE reverb.event_cancellations (
    run_id text PRIMARY KEY,
    event_id text NOT NULL,
    function_id text NOT NULL,
    -- The index of the function's cancel_on entry the event met.
    position integer NOT NULL,
    cancelled_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX event_cancellations_event ON reverb.event_cancellations (event_id);

-- One trigger on run creation for both the function timeouts' first deadline (0016's
-- runs_timeouts_created, folded in) and the cancellation waits, whichever statement
-- creates runs (the fan-out, an invoke, a replay, a cron tick, a failure handler, a
-- resume). A statement over the transition table is planned at every call, so:
-- - while no function has a cancel_on (one probe of `functions_cancel_on`), 0016's
--   statement runs as it was;
-- - otherwise one statement reads the transition table: the join of the new runs with
--   their functions, which inserts the deadlines and returns the runs whose function has
--   a cancel_on; only if there are any, a second statement (by primary keys, its plan
--   cached) makes their waits and flags them.
-- Measured with EXPLAIN ANALYZE (docs/architecture.md, "Cancelling runs from events").
--
-- A cancellation wait: step id '' (no step has it), position = the entry's index, the
-- match value read from the run's first event (a run whose event lacks the match path
-- gets no wait for that entry), `not_before` = the run's creation (earlier events never
-- cancel it), `expires_at` = creation + the entry's timeout.
DROP TRIGGER runs_timeouts_created ON reverb.runs;
DROP FUNCTION reverb.runs_timeouts_created();

CREATE FUNCTION reverb.runs_created() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    cancelling text[];
BEGIN
    IF NOT EXISTS (SELECT FROM reverb.functions WHERE cancel_on IS NOT NULL) THEN
        -- No function has a cancel_on: 0016's statement as it was.
        INSERT INTO public.pgqueuer (priority, entrypoint, payload, status, execute_after)
        SELECT 1, 'time_out_run',
               convert_to(json_build_object(
                   'run_id', r.id,
                   'limit', CASE WHEN r.started_at IS NULL THEN 'start' ELSE 'finish' END
               )::text, 'UTF8'),
               'queued',
               CASE WHEN r.started_at IS NULL THEN r.created_at + f.start_timeout
                    ELSE r.started_at + f.finish_timeout END
        FROM new_runs r JOIN reverb.functions f ON f.id = r.function_id
        WHERE r.status NOT IN ('completed', 'failed', 'cancelled')
          AND CASE WHEN r.started_at IS NULL THEN f.start_timeout IS NOT NULL
                   ELSE f.finish_timeout IS NOT NULL END;
        RETURN NULL;
    END IF;
    WITH live AS MATERIALIZED (
        SELECT r.id, r.created_at, r.started_at, f.start_timeout, f.finish_timeout,
               f.cancel_on IS NOT NULL AS cancels
        FROM new_runs r JOIN reverb.functions f ON f.id = r.function_id
        WHERE r.status NOT IN ('completed', 'failed', 'cancelled')
          AND (f.cancel_on IS NOT NULL
               OR CASE WHEN r.started_at IS NULL THEN f.start_timeout IS NOT NULL
                       ELSE f.finish_timeout IS NOT NULL END)
    ), deadlines AS (
        INSERT INTO public.pgqueuer (priority, entrypoint, payload, status, execute_after)
        SELECT 1, 'time_out_run',
               convert_to(json_build_object(
                   'run_id', r.id,
                   'limit', CASE WHEN r.started_at IS NULL THEN 'start' ELSE 'finish' END
               )::text, 'UTF8'),
               'queued',
               CASE WHEN r.started_at IS NULL THEN r.created_at + r.start_timeout
                    ELSE r.started_at + r.finish_timeout END
        FROM live r
        WHERE CASE WHEN r.started_at IS NULL THEN r.start_timeout IS NOT NULL
                   ELSE r.finish_timeout IS NOT NULL END
    )
    SELECT array_agg(id) FILTER (WHERE cancels) INTO cancelling FROM live;
    IF cancelling IS NULL THEN
        RETURN NULL;
    END IF;
    WITH made AS (
        INSERT INTO reverb.waits (run_id, step_id, position, event_name, match_path,
                                  match_value, condition, not_before, expires_at)
        SELECT r.id, '', (c.n - 1)::int, c.spec ->> 'event', p.path,
               CASE WHEN cardinality(p.path) = 0 THEN 'null'::jsonb ELSE e.data #> p.path END,
               c.spec ->> 'if', r.created_at,
               r.created_at + (c.spec ->> 'timeout_ms')::bigint * interval '1 millisecond'
        FROM reverb.runs r
        JOIN reverb.functions f ON f.id = r.function_id
        CROSS JOIN LATERAL jsonb_array_elements(f.cancel_on) WITH ORDINALITY AS c(spec, n)
        CROSS JOIN LATERAL (
            SELECT ARRAY(SELECT jsonb_array_elements_text(c.spec -> 'path')) AS path
        ) p
        LEFT JOIN reverb.events e ON e.id = r.event_ids[1]
        WHERE r.id = ANY(cancelling)
          AND (cardinality(p.path) = 0 OR e.data #> p.path IS NOT NULL)
        RETURNING run_id
    )
    UPDATE reverb.runs SET cancel_waits = true
    WHERE id = ANY(cancelling) AND id IN (SELECT run_id FROM made);
    RETURN NULL;
END
$$;

CREATE TRIGGER runs_created AFTER INSERT ON reverb.runs
REFERENCING NEW TABLE AS new_runs
FOR EACH STATEMENT EXECUTE FUNCTION reverb.runs_created();

-- A run's end, whichever statement ends it, in its transaction: one row trigger for
-- what 0007's runs_cron_ended did (a cron run's end wakes a schedule's buffered tick) and
-- for deleting the waits of a run that has cancellation waits (its cancellation waits,
-- and any step wait left open). One trigger, not two: each row trigger's WHEN costs every
-- ending UPDATE statement its set-up (about 10 µs measured for a second one); other runs
-- pay this WHEN's tests only.
DROP TRIGGER runs_cron_ended ON reverb.runs;
DROP FUNCTION reverb.cron_run_ended();

CREATE FUNCTION reverb.run_ended() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.cancel_waits THEN
        DELETE FROM reverb.waits WHERE run_id = NEW.id;
    END IF;
    IF NEW.event_ids[1] LIKE 'reverb-cron:%' THEN
        UPDATE reverb.cron_schedules SET fire_at = least(fire_at, now()), updated_at = now()
        WHERE function_id = NEW.function_id AND last_run_id = NEW.id
          AND buffered_at IS NOT NULL;
        IF FOUND THEN
            INSERT INTO public.pgqueuer (priority, entrypoint, payload, status, execute_after)
            VALUES (1, 'cron_tick', convert_to('{}', 'UTF8'), 'queued', now());
        END IF;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER runs_ended AFTER UPDATE OF status ON reverb.runs
FOR EACH ROW
WHEN (NEW.status IN ('completed', 'failed', 'cancelled')
      AND OLD.status NOT IN ('completed', 'failed', 'cancelled')
      AND (NEW.cancel_waits OR NEW.event_ids[1] LIKE 'reverb-cron:%'))
EXECUTE FUNCTION reverb.run_ended();
