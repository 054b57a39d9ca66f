-- Admission (reverb_store.execution.admission): whether a run must pass the run gates
-- before it executes, decided once when the run is created. A run no gate applies to
-- (every run, until a gate is registered) is claimed by the one claim statement, which
-- only checks this flag on the row it updates. A constant default: no table rewrite.
ALTER TABLE reverb.runs ADD COLUMN gated boolean NOT NULL DEFAULT false;
