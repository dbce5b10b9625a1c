"""OpenStack mode: validate `X-Auth-Token` against Keystone's v3 API and register Reddwarf in its catalog.

`settings.py` (`REDDWARF_KEYSTONE_*`), `client.py` (a small httpx client for the few Keystone calls we
need: get a token, validate a token, the catalog's services, endpoints and regions), `cache.py` (a bounded
cache of validations keyed by the token's sha256), `authenticator.py` (token -> `AuthContext`, with Trove's
admin semantics) and `catalog.py` (the idempotent `register` behind `reddwarf openstack register`).
Imported by `reddwarf.wiring` and `reddwarf.cli.openstack` only; it never imports `api`, `store` or plugins.
"""
