"""Reverb measured as production runs it: separate gateway, worker and host processes."""
