"""Alembic revisions of the metadata store, one file per revision, named NNNN_what.py."""
