"""The durable reconciler: every long operation is a row in the store, run by stateless workers.

`kernel/` is the machinery (claiming work with leases, the step journal, retries, crash points for
chaos tests); `reconcilers/` holds one module per resource with the steps of each operation. Workflows
import the store, the domain and the Engine/Runtime protocols; never the API, never a concrete plugin.
"""
