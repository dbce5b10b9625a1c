"""Services: the use cases shared by the API and the CLI.

They validate a request (scope, quota, flavor, datastore version, capability, the engine's own rules),
then record intent in ONE unit of work (a row with its initial status and an operation for the durable
workers) and return at once. They never do the long work themselves and never write status after
creation (reconcilers do). Services may import `store` repositories, `domain`, `identity.context`,
`settings` and the `engines/base.py` / `runtimes/base.py` protocols, never a concrete plugin or FastAPI.
"""
