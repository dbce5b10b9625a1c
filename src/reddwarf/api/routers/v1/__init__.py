"""Trove v1.0 routers: thin adapters from HTTP to `reddwarf.services` and back through `api.views`."""
