-- Waits for events (reverb_store.execution.waits): step.wait_for_event and wait_for_any.
--
-- One row per condition of an open wait. An event resolves a wait when its name and
-- its value at the wait's match path equal the row's (`waits_key`: an event never
-- scans every open wait), and the wait's CEL condition, if any, holds. The row goes in
-- the transaction that commits the wait step, and every row of the step goes in the
-- transaction that resolves it (the winner of a wait_for_any removes the losers) or
-- times it out. No foreign key to the run (as for steps: a resolved wait deletes its
-- rows without locking the run's row first).
CREATE TABLE reverb.waits (
    run_id text NOT NULL,
    step_id text NOT NULL,
    -- 0-based place among the step's conditions (wait_for_any's index).
    position integer NOT NULL,
    event_name text NOT NULL,
    -- The path in the candidate's data (jsonb path, '{}' for no match) and the value the
    -- run's triggering event has there ('null' for no match).
    match_path text[] NOT NULL,
    match_value jsonb NOT NULL,
    -- A CEL condition over `event` (the trigger) and `async` (the candidate), or NULL.
    condition text,
    -- With a lookback: events accepted before this time do not resolve the wait.
    not_before timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, step_id, position)
);
CREATE INDEX waits_key ON reverb.waits (event_name, match_path, match_value);

-- The (event name, match path) pairs any wait has used. Accepting an event of a name
-- listed here enqueues a `match_waits` job for it. A pair is added once, under an
-- ACCESS EXCLUSIVE lock of this table, by the first wait that uses it, and never
-- removed: event acceptance reads this table, so its lock is taken before the accepting
-- statement's snapshot, and an event accepted after that first wait's commit sees the
-- row (docs/architecture.md, "Waiting for events").
CREATE TABLE reverb.wait_keys (
    event_name text NOT NULL,
    match_path text[] NOT NULL,
    PRIMARY KEY (event_name, match_path)
);

-- The advisory lock that orders a wait's look back against the matching of events of
-- its key: equal jsonb values get equal keys (a number by its value without trailing
-- zeros; arrays and objects, whose text may differ for equal values, share one key per
-- type: a coarser lock, never a missed event).
CREATE FUNCTION reverb.wait_lock_key(event_name text, match_path text[], match_value jsonb)
RETURNS bigint LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT hashtextextended(
        'reverb.waits:' || event_name || chr(31) || match_path::text || chr(31) ||
        CASE jsonb_typeof(match_value)
            WHEN 'string' THEN match_value::text
            WHEN 'boolean' THEN match_value::text
            WHEN 'null' THEN 'null'
            WHEN 'number' THEN trim_scale((match_value #>> '{}')::numeric)::text
            ELSE jsonb_typeof(match_value)
        END, 0)
$$;
