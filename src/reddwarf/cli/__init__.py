"""The `reddwarf` command (Typer + Rich).

`main.py` is the root app; `operator.py` holds the operator entry points (server, worker, db, project,
token, engines) and is the only CLI module that imports `reddwarf.wiring`; `tenant.py` holds the tenant
commands, which go through `reddwarf.client` over HTTP like any other client.
"""
