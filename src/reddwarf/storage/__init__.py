"""Backup targets and the artifact format: byte streams and small objects under keys, nothing engine-specific.

`base` is the `Storage` protocol; `filesystem` and `s3` implement it (only `reddwarf.wiring` imports them, and
only `s3` imports boto3); `artifact` turns a tool's stream into a compressed, checksummed, optionally
encrypted object and back, verified (`manifest` records what a restore checks, `keyring` holds the keys that
wrap encrypted backups' data keys); `settings` is `REDDWARF_BACKUP_*`. The workflows import `base` and
`artifact`; the API never imports this package (docs/backups.md).
"""
