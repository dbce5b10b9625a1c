"""Backup targets: byte streams and small objects under keys, nothing engine-specific (see `base`)."""
