"""Repositories of the metadata store: one module per aggregate, each turning rows into domain objects.

Private to `reddwarf.store`: callers reach them through `UnitOfWork` attributes.
"""
