-- Host leases (reverb_store.control.leases): every registered host address lasts until
-- `expires_at` unless its host renews it (Ingress/RenewHostLease); workers call only hosts
-- whose lease has not ended, and a host that stops cleanly deletes its row
-- (Ingress/ReleaseHostLease). `instance_id` names the host process that holds the lease, so
-- a host stopping on an address another process has taken over releases nothing.
--
-- Rows that exist now, and rows inserted without a lease (by a gateway of an earlier
-- release during a rolling upgrade), last one hour: hosts of an earlier release, which
-- never renew, are no longer called an hour after they registered. A stable default is
-- evaluated once for the existing rows: no table rewrite.
--
-- Expired rows are deleted when a host of the app registers (a host start); until then
-- queries skip them. An app has few rows (its live hosts and those that died since the
-- last start), all under the primary key's (app_id, ...) prefix: no other index is needed.
ALTER TABLE reverb.app_hosts
    ADD COLUMN expires_at timestamptz NOT NULL DEFAULT now() + interval '1 hour',
    ADD COLUMN instance_id text NOT NULL DEFAULT '';
