-- A run's `finish` deadline is queued when the run is created, not when it first starts:
-- the claim that starts a run no longer fires a row trigger (0016's
-- `runs_timeouts_started`, whose PL/pgSQL call, INSERT and the queue's statement trigger
-- cost every run's first claim about 40 µs even when its function had no timeout).
--
-- The `finish` job is due at `coalesce(started_at, created_at) + finish_timeout`: a run
-- cannot pass its finish limit earlier, since it starts after it is created. When the job
-- runs (`execution.time_out_run`) and the run has started, the limit is `started_at +
-- finish_timeout` as before (checked again at that time if it lies ahead); a run that has
-- not started yet is checked again `finish_timeout` later, the earliest it can pass.
--
-- One difference from 0016: a redeploy that gives a function a finish limit applies it
-- to the runs created after it (before, also to runs created before it but started
-- after). Runs this migration finds queued and not started, of a function with a
-- finish limit, get their `finish` job here, due `finish_timeout` from now.
DROP TRIGGER runs_timeouts_started ON reverb.runs;
DROP FUNCTION reverb.runs_timeouts_started();

INSERT INTO public.pgqueuer (priority, entrypoint, payload, status, execute_after)
SELECT 1, 'time_out_run',
       convert_to(json_build_object('run_id', r.id, 'limit', 'finish')::text, 'UTF8'),
       'queued', now() + f.finish_timeout
FROM reverb.runs r JOIN reverb.functions f ON f.id = r.function_id
WHERE r.started_at IS NULL AND r.status IN ('queued', 'paused')
  AND f.finish_timeout IS NOT NULL;

-- 0017's function, its deadlines now one row per limit of a new run: `start` for a run
-- created queued, `finish` for every run (see above).
CREATE OR REPLACE FUNCTION reverb.runs_created() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    cancelling text[];
BEGIN
    IF NOT EXISTS (SELECT FROM reverb.functions WHERE cancel_on IS NOT NULL) THEN
        -- No function has a cancel_on: the deadlines only.
        INSERT INTO public.pgqueuer (priority, entrypoint, payload, status, execute_after)
        SELECT 1, 'time_out_run',
               convert_to(json_build_object('run_id', r.id, 'limit', l.name)::text, 'UTF8'),
               'queued', l.due
        FROM new_runs r JOIN reverb.functions f ON f.id = r.function_id
        CROSS JOIN LATERAL (VALUES
            ('start', CASE WHEN r.started_at IS NULL THEN r.created_at + f.start_timeout END),
            ('finish', coalesce(r.started_at, r.created_at) + f.finish_timeout)
        ) AS l (name, due)
        WHERE r.status NOT IN ('completed', 'failed', 'cancelled')
          AND (f.start_timeout IS NOT NULL OR f.finish_timeout IS NOT NULL)
          AND l.due IS NOT NULL;
        RETURN NULL;
    END IF;
    WITH live AS MATERIALIZED (
        SELECT r.id, r.created_at, r.started_at, f.start_timeout, f.finish_timeout,
               f.cancel_on IS NOT NULL AS cancels
        FROM new_runs r JOIN reverb.functions f ON f.id = r.function_id
        WHERE r.status NOT IN ('completed', 'failed', 'cancelled')
          AND (f.cancel_on IS NOT NULL OR f.start_timeout IS NOT NULL
               OR f.finish_timeout IS NOT NULL)
    ), deadlines AS (
        INSERT INTO public.pgqueuer (priority, entrypoint, payload, status, execute_after)
        SELECT 1, 'time_out_run',
               convert_to(json_build_object('run_id', r.id, 'limit', l.name)::text, 'UTF8'),
               'queued', l.due
        FROM live r
        CROSS JOIN LATERAL (VALUES
            ('start', CASE WHEN r.started_at IS NULL THEN r.created_at + r.start_timeout END),
            ('finish', coalesce(r.started_at, r.created_at) + r.finish_timeout)
        ) AS l (name, due)
        WHERE l.due IS NOT NULL
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
