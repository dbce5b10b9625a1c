"""The tenant CLI starts without the control plane: `reddwarf instance list` imports no server library.

Each check runs the real `reddwarf` entry point in a fresh interpreter (imports are process-wide), against a
stub HTTP endpoint in that same process, and then reads `sys.modules`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from reddwarf.cli import root

SERVER_LIBRARIES = ("sqlalchemy", "alembic", "fastapi", "starlette", "uvicorn", "psycopg", "pymysql", "redis",
                    "reddwarf.wiring", "reddwarf.store", "reddwarf.services", "reddwarf.engines", "reddwarf.runtimes")

# Runs `reddwarf <args>` through `reddwarf.cli.main.main` against a stub API answering an empty instance list.
PROBE = textwrap.dedent("""
    import json, sys, threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Stub(BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps({"instances": [], "databases": [], "users": [], "flavors": [],
                               "datastores": [], "backups": []}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    stub = ThreadingHTTPServer(("127.0.0.1", 0), Stub)
    threading.Thread(target=stub.serve_forever, daemon=True).start()
    sys.argv = ["reddwarf", *json.loads(sys.argv[1]), "--endpoint", f"http://127.0.0.1:{stub.server_address[1]}",
                "--project", "p1"]
    from reddwarf.cli.main import main
    try:
        main()
    except SystemExit as exc:
        code = exc.code
    else:
        code = 0
    print(json.dumps({"code": code, "modules": sorted(sys.modules)}), file=sys.stderr)
""")


def _imports_of(*args: str) -> set[str]:
    env = {"REDDWARF_TOKEN": "t0ken", "PATH": "/usr/bin:/bin", "COLUMNS": "100"}
    result = subprocess.run([sys.executable, "-c", PROBE, json.dumps(list(args))], capture_output=True, text=True,
                            env=env, timeout=60, check=False)
    report = json.loads(result.stderr.strip().splitlines()[-1])
    assert report["code"] == 0, result.stdout + result.stderr
    return set(report["modules"])


def _loaded(modules: set[str], library: str) -> bool:
    return library in modules or any(name.startswith(library + ".") for name in modules)


@pytest.mark.parametrize("args", [("instance", "list"), ("flavor", "list"), ("database", "list", "i1"),
                                  ("user", "list", "i1"), ("backup", "list")])
def test_tenant_commands_import_no_server_library(args: tuple[str, ...]) -> None:
    modules = _imports_of(*args)
    assert "reddwarf.client" in modules  # the probe did run the command
    assert [lib for lib in SERVER_LIBRARIES if _loaded(modules, lib)] == []


def test_lazy_help_lines_are_the_commands_own() -> None:
    """`reddwarf --help` lists each sub-command from `root.COMMANDS` without importing it: those lines must
    say what the command itself says."""
    for name, lazy in root.COMMANDS.items():
        command = root.load_command(name)
        assert command.name == name
        assert (command.help or "").strip().split("\n\n")[0].strip() == lazy.help, name
