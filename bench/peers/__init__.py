"""Peers measured beside Reverb on the same PostgreSQL: PgQueuer, DBOS, Graphile Worker."""
