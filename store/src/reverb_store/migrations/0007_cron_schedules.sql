-- Cron schedules (issue 9): one row per cron trigger of a registered function, the
-- scheduler's whole state. Registration writes the rows in its transaction; a
-- `cron_tick` job fires the rows whose `fire_at` passed (locked, SKIP LOCKED), and
-- each tick's event id, `reverb-cron:<function>:<tick>`, makes a doubled tick impossible.
CREATE TABLE reverb.cron_schedules (
    id bigserial PRIMARY KEY,
    function_id text NOT NULL REFERENCES reverb.functions (id) ON DELETE CASCADE,
    cron text NOT NULL,
    timezone text NOT NULL,
    overlap text NOT NULL CHECK (overlap IN ('allow', 'skip', 'buffer_one', 'cancel_previous')),
    catch_up text NOT NULL CHECK (catch_up IN ('skip', 'latest', 'all')),
    catch_up_window interval NOT NULL,
    jitter interval NOT NULL DEFAULT '0',
    -- The next tick (its scheduled time, UTC) and when it fires: the tick plus its
    -- jitter, or at once when a buffered tick's previous run ended.
    next_at timestamptz NOT NULL,
    fire_at timestamptz NOT NULL,
    -- The latest tick that started a run, and that run (what `overlap` looks at).
    last_at timestamptz,
    last_run_id text,
    -- buffer_one: the tick kept until the previous run ends.
    buffered_at timestamptz,
    -- Ticks missed while no worker could fire them (not caught up), and ticks the
    -- overlap policy skipped.
    missed bigint NOT NULL DEFAULT 0,
    skipped bigint NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (function_id, cron, timezone)
);
CREATE INDEX cron_schedules_fire_at ON reverb.cron_schedules (fire_at);

-- buffer_one, woken by the run's end (never by polling): when a cron run ends and a
-- schedule keeps a tick for it, the schedule is due at once and a `cron_tick` job due
-- now is queued, in the transaction that ended the run, whichever statement ended it.
-- The job's payload is CronTick's encoding, `{}` (a kind's encoding never changes).
CREATE FUNCTION reverb.cron_run_ended() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE reverb.cron_schedules SET fire_at = least(fire_at, now()), updated_at = now()
    WHERE function_id = NEW.function_id AND last_run_id = NEW.id AND buffered_at IS NOT NULL;
    IF FOUND THEN
        INSERT INTO public.pgqueuer (priority, entrypoint, payload, status, execute_after)
        VALUES (1, 'cron_tick', convert_to('{}', 'UTF8'), 'queued', now());
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER runs_cron_ended AFTER UPDATE OF status ON reverb.runs
FOR EACH ROW
WHEN (NEW.status IN ('completed', 'failed', 'cancelled')
      AND OLD.status NOT IN ('completed', 'failed', 'cancelled')
      AND NEW.event_ids[1] LIKE 'reverb-cron:%')
EXECUTE FUNCTION reverb.cron_run_ended();
