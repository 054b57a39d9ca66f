-- Function timeouts (issue 10): `reverb.Timeouts(start=, finish=)` enforced by one
-- delayed `time_out_run` job per limit of a run, due when the limit passes; nothing
-- polls. `start` runs from the run's creation (queued) to its first invocation
-- (`started_at`), `finish` from then to its end. The jobs are inserted by triggers, in
-- the transaction that creates or starts the run, whichever statement does it (the
-- fan-out, an invoke, a replay, a cron tick, a failure handler, a claim). The job's
-- payload is TimeOutRun's encoding (`{"run_id", "limit"}`; a kind's encoding never
-- changes). The handler (`execution.time_out_run`) fails the run with FunctionTimeout
-- unless it ended, or, for `start`, it started.

-- A statement's new runs: those of a function with a timeout get their first deadline
-- (`start` for a queued run, `finish` for a run created claimed). One join per
-- statement, on the functions' primary key; nothing is inserted when no new run's
-- function has a timeout.
CREATE FUNCTION reverb.runs_timeouts_created() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
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
END
$$;

CREATE TRIGGER runs_timeouts_created AFTER INSERT ON reverb.runs
REFERENCING NEW TABLE AS new_runs
FOR EACH STATEMENT EXECUTE FUNCTION reverb.runs_timeouts_created();

-- A run's first invocation (its claim sets `started_at` once): its `finish` deadline.
-- Other claims pay the WHEN's comparison only.
CREATE FUNCTION reverb.runs_timeouts_started() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.pgqueuer (priority, entrypoint, payload, status, execute_after)
    SELECT 1, 'time_out_run',
           convert_to(json_build_object('run_id', NEW.id, 'limit', 'finish')::text, 'UTF8'),
           'queued', NEW.started_at + f.finish_timeout
    FROM reverb.functions f
    WHERE f.id = NEW.function_id AND f.finish_timeout IS NOT NULL;
    RETURN NULL;
END
$$;

CREATE TRIGGER runs_timeouts_started AFTER UPDATE OF started_at ON reverb.runs
FOR EACH ROW
WHEN (OLD.started_at IS NULL AND NEW.started_at IS NOT NULL)
EXECUTE FUNCTION reverb.runs_timeouts_started();
