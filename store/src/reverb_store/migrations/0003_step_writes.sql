-- Step writes: the path every step of every run takes, kept to one row and one index.
--
-- The foreign key from steps to runs made each step insert look its run up and
-- lock the run's row (FOR KEY SHARE), a WAL-logged write on the run for every
-- step. Steps are written only by the job that drives their run (every
-- transition checks `runs.job_id`), so the key guarded nothing the code does not;
-- whatever deletes runs deletes their steps with them.
ALTER TABLE reverb.steps DROP CONSTRAINT steps_run_id_fkey;

-- The memo is read by run (the primary key, whose first column is run_id) and
-- sorted by seq in memory: a run has few steps, so the second index only cost a
-- write per step.
DROP INDEX reverb.steps_run_seq;
