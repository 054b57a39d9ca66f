-- Concurrency limits without a per-key serialization (reverb_store.flow.concurrency):
-- a key's capacity is split into shards, each a counter of the slots taken in it, so a
-- take or a free locks one shard's row for the rest of its transaction only, and takes
-- skip shards another transaction holds.

-- `capacity` of the key's shards sums to the key's `capacity`; `used` is never below the
-- number of live slots taken in the shard (a take counts with its slot's insert, a free
-- after its delete), so a shard with `used < capacity` has room. `waiters`: runs may be
-- queued for the key (set by a hold, cleared by a free that found the queue empty while
-- holding the shard's lock).
CREATE TABLE reverb.concurrency_shards (
    key text NOT NULL,
    shard integer NOT NULL,
    capacity integer NOT NULL CHECK (capacity >= 0),
    used integer NOT NULL DEFAULT 0,
    waiters boolean NOT NULL DEFAULT false,
    PRIMARY KEY (key, shard)
);

-- The shard a slot was taken in (or handed over in).
ALTER TABLE reverb.concurrency_slots ADD COLUMN shard integer NOT NULL DEFAULT 0;

-- A run that stops leaves the queues it waited in (a cancelled held run).
CREATE INDEX concurrency_queue_run ON reverb.concurrency_queue (run_id);
