-- Due jobs are notified on Reverb's own channel, not pgqueuer's.
--
-- Every worker takes the due jobs it is notified of itself (`own_jobs`), so the
-- notification that migration 0002 sent on pgqueuer's channel also woke pgqueuer's
-- dequeue loop, which then dequeued and probed the queue three more times for the job
-- the worker had already taken: four statements and, planned with their values on the
-- queue connection, 0.6 ms of the server's time per notification. pgqueuer's channel
-- now carries only its own health checks; its dequeue polls
-- (REVERB_WORKER_POLL_INTERVAL) for stale jobs of workers that died.
CREATE OR REPLACE FUNCTION reverb.notify_jobs_due() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT FROM inserted WHERE status = 'queued' AND execute_after <= now()) THEN
        PERFORM pg_notify('reverb_jobs_due', '');
    END IF;
    RETURN NULL;
END
$$;
