"""The local runtime: database servers as supervised processes on this host, one OS user per instance.

Only `reddwarf.wiring` and test fixtures import this package; everything else sees
`reddwarf.runtimes.base.Runtime`.
"""

from reddwarf.runtimes.local.runtime import LocalRuntime
from reddwarf.runtimes.local.settings import LocalRuntimeSettings

__all__ = ["LocalRuntime", "LocalRuntimeSettings"]
