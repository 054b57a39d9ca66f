"""Runs: fan-out, the run driver (claim, invocation, checkpoints, finals)."""
