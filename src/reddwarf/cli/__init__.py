"""The `reddwarf` command (Typer + Rich).

`main.py` is the entry point (start-up settings, standard library only) and `root.py` the root group,
which imports each sub-command only when it runs; `operator.py` holds the operator entry points (server,
worker, db, project, token, engines) and is the only CLI module that imports `reddwarf.wiring`; `tenant.py`
and `accounts.py` hold the tenant commands, which go through `reddwarf.client` over HTTP like any other
client.
"""
