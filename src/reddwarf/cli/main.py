"""The `reddwarf` entry point (`[project.scripts]`): start-up settings, then the root group in `root.py`.

This module imports only the standard library, so that `main()` can set the process up before Typer, Rich,
httpx and pydantic are imported (bench/cli_startup.py measures the result).
"""

from __future__ import annotations

import gc
import os
import sys


def main() -> None:
    # No cyclic garbage collection while the command's modules are imported: imports make many objects and no
    # garbage. `root.LazyGroup.resolve_command` freezes what they made and turns the collector back on before
    # the command runs.
    gc.disable()
    # The CLI uses no pydantic plugin; looking for them scans every installed distribution's entry points.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    # httpx imports its own command-line client (`httpx._main`: click, Rich's progress and syntax, pygments)
    # when it can; Reddwarf never runs it. A None entry in sys.modules makes that optional import fail fast,
    # and httpx falls back to a stub `httpx.main`.
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
    # Imported here, after the set-up above, on purpose (start-up time, not an import cycle).
    from reddwarf.cli.root import app

    app()
