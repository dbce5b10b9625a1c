"""Trove v1.0 request bodies."""
