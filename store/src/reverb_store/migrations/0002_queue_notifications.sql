-- Queue notifications: workers are told only of jobs they can run at once.
--
-- pgqueuer's trigger notifies its channel after every statement that inserts,
-- updates or deletes a job: each dequeue, heartbeat and completion wakes every
-- worker to dequeue again for nothing, and every notifying commit queues behind
-- PostgreSQL's cluster-wide notification lock. Delayed jobs need no notification
-- either: the worker that schedules one runs it when it comes due, and the others
-- poll (REVERB_WORKER_POLL_INTERVAL) for those of a worker that died.
--
-- pgqueuer's trigger keeps its name, table and function, which is all its upgrade
-- compares, but fires on TRUNCATE only; this trigger sends the same event on the
-- same channel when a statement inserts a job that is due now.
DROP TRIGGER IF EXISTS tg_pgqueuer_changed ON pgqueuer;
CREATE TRIGGER tg_pgqueuer_changed AFTER TRUNCATE ON pgqueuer
    FOR EACH STATEMENT EXECUTE FUNCTION fn_pgqueuer_changed();

CREATE FUNCTION reverb.notify_jobs_due() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT FROM inserted WHERE status = 'queued' AND execute_after <= now()) THEN
        PERFORM pg_notify('ch_pgqueuer', json_build_object(
            'channel', 'ch_pgqueuer',
            'operation', 'insert',
            'sent_at', now(),
            'table', TG_TABLE_NAME,
            'type', 'table_changed_event'
        )::text);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER reverb_jobs_due AFTER INSERT ON pgqueuer
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION reverb.notify_jobs_due();
