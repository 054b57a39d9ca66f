"""`python -m bench.chaos`: kill -9 of workers and hosts under load, and a PostgreSQL restart."""
