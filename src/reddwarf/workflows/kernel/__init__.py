"""Workflow kernel: leases, the step journal, retries with backoff, test-only crash points."""
