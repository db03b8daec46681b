"""Runs: durable run rows, claiming with leases, the runner and the worker loop."""
