"""Idempotency keys: a retried POST is answered with the stored outcome of the first one."""
