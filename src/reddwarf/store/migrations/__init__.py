"""Alembic migrations of the metadata store, run in code by `reddwarf.store.database.Database.upgrade`."""
