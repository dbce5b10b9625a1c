"""Engines: WHAT a datastore needs (initialise, configure, probe, users, databases), never WHERE it runs.

`base.py` holds the `Engine` protocol; each engine is a package of its own named after its datastore
(`postgresql`, later `mariadb`, `redis`). Only `reddwarf.wiring` and test fixtures import a concrete
engine; reconcilers see `Engine`. Engines never import runtimes.
"""
