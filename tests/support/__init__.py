"""Helpers shared by the e2e and chaos tests: a real `reddwarf` server process and orphan checks."""
