"""CLI start-up benchmark: wall-clock time of `reddwarf instance list` and `reddwarf --help`.

`reddwarf instance list` runs against a stub HTTP endpoint in this process (a `ThreadingHTTPServer` on a
free loopback port answering `GET /v1.0/<project>/instances` with three instances), or against a running
server with `--endpoint` (then REDDWARF_TOKEN and REDDWARF_PROJECT must be set). For reference it also times
the same GET and table from a bare one-command Typer script (the floor of Typer, httpx and Rich, and of
pydantic, which Typer imports) and `python -c pass`. Each command runs `--runs` times as a fresh process (the
installed `reddwarf` script next to this Python), in rounds that run every command once, so that a change of
the machine's load moves them alike; one warm-up round is not counted. Prints the median, p95 and best
wall-clock time of each and its median CPU time (which other load on the machine moves less), the target
(tenant commands under 0.3 s), and, as its last line, one JSON object with the figures.

    .venv/bin/python bench/cli_startup.py --runs 15
    REDDWARF_TOKEN=... REDDWARF_PROJECT=... .venv/bin/python bench/cli_startup.py --endpoint http://127.0.0.1:8779
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

REDDWARF = str(Path(sys.executable).with_name("reddwarf"))
TARGET_SECONDS = 0.3
STUB_PROJECT = "bench-project"
STUB_TOKEN = "bench-token"


def _instance(number: int) -> dict[str, Any]:
    return {
        "id": f"00000000-0000-4000-8000-00000000000{number}", "name": f"db{number}", "status": "ACTIVE",
        "operating_status": "HEALTHY", "links": [], "flavor": {"id": "1", "links": []},
        "datastore": {"type": "postgresql", "version": "15", "version_number": "15.18"},
        "region": "RegionOne", "volume": {"size": 1}, "ip": [f"127.0.1.{number}"],
        "addresses": [{"address": f"127.0.1.{number}", "type": "private"}], "port": 5432,
    }


class _StubApi(BaseHTTPRequestHandler):
    """Answers the instance list of the stub project; anything else is Trove's 404."""

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] == f"/v1.0/{STUB_PROJECT}/instances":
            status, body = 200, {"instances": [_instance(n) for n in range(1, 4)]}
        else:
            status, body = 404, {"itemNotFound": {"code": 404, "message": "The resource could not be found."}}
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:  # the stub is quiet
        return


# The same work with nothing of Reddwarf: a one-command Typer app that GETs the list with httpx and prints a Rich
# table. Typer imports pydantic to convert its parameters, so this is the floor of the CLI's own stack.
STACK_FLOOR = """
import gc, os, sys
gc.disable()
sys.modules["httpx._main"] = None
import httpx, typer
from rich.console import Console
from rich.table import Table
app = typer.Typer()
@app.command()
def main() -> None:
    url = os.environ["REDDWARF_ENDPOINT"] + "/v1.0/" + os.environ["REDDWARF_PROJECT"] + "/instances"
    with httpx.Client(transport=httpx.HTTPTransport(verify=False)) as client:
        found = client.get(url, headers={"X-Auth-Token": os.environ["REDDWARF_TOKEN"]}).json()["instances"]
    table = Table("ID", "Name", "Status")
    for instance in found:
        table.add_row(instance["id"], instance["name"], instance["status"])
    Console().print(table)
app()
"""


def _time(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall-clock and CPU (user + system) seconds of one run of `argv` as a fresh process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr.strip()}")
    return elapsed, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _figures(label: str, runs: list[tuple[float, float]]) -> dict[str, float]:
    samples = sorted(wall for wall, _ in runs)
    figures = {
        "median": round(statistics.median(samples), 3),
        "p95": round(samples[min(len(samples) - 1, round(0.95 * (len(samples) - 1)))], 3),
        "best": round(samples[0], 3),
        "cpu_median": round(statistics.median(cpu for _, cpu in runs), 3),
    }
    print(f"{label:<28} median {figures['median']:.3f} s  p95 {figures['p95']:.3f} s  best {figures['best']:.3f} s"
          f"  (CPU median {figures['cpu_median']:.3f} s)")
    return figures


def _measure(commands: dict[str, list[str]], env: dict[str, str], runs: int) -> dict[str, dict[str, float]]:
    """Every command once per round, `runs` rounds after a warm-up round (the page cache, not Reddwarf, would
    otherwise decide the first run)."""
    for argv in commands.values():
        _time(argv, env)
    samples: dict[str, list[tuple[float, float]]] = {label: [] for label in commands}
    for _ in range(runs):
        for label, argv in commands.items():
            samples[label].append(_time(argv, env))
    return {label: _figures(label, found) for label, found in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=11, help="timed runs of each command")
    parser.add_argument("--endpoint", help="a running Reddwarf API (default: a stub endpoint in this process)")
    args = parser.parse_args()

    env = {**os.environ, "COLUMNS": "120"}
    stub: ThreadingHTTPServer | None = None
    if args.endpoint:
        env["REDDWARF_ENDPOINT"] = args.endpoint
        if not env.get("REDDWARF_TOKEN") or not env.get("REDDWARF_PROJECT"):
            raise SystemExit("--endpoint needs REDDWARF_TOKEN and REDDWARF_PROJECT in the environment")
    else:
        stub = ThreadingHTTPServer(("127.0.0.1", 0), _StubApi)
        threading.Thread(target=stub.serve_forever, daemon=True).start()
        env.update(REDDWARF_ENDPOINT=f"http://127.0.0.1:{stub.server_address[1]}", REDDWARF_TOKEN=STUB_TOKEN,
                   REDDWARF_PROJECT=STUB_PROJECT)
    try:
        print(f"reddwarf CLI start-up, {args.runs} rounds ({'stub endpoint' if stub else args.endpoint})")
        figures = _measure({
            "reddwarf instance list": [REDDWARF, "instance", "list"],
            "reddwarf --help": [REDDWARF, "--help"],
            "Typer+httpx+Rich script": [sys.executable, "-c", STACK_FLOOR],
            "python -c pass": [sys.executable, "-c", "pass"],
        }, env, args.runs)
    finally:
        if stub is not None:
            stub.shutdown()
    listing = figures["reddwarf instance list"]
    verdict = "met" if listing["median"] < TARGET_SECONDS else "MISSED"
    print(f"target: tenant commands start in under {TARGET_SECONDS} s (median of `instance list`): {verdict}")
    print(json.dumps({"benchmark": "cli_startup", "runs": args.runs, "endpoint": "stub" if stub else args.endpoint,
                      "instance_list_s": listing, "help_s": figures["reddwarf --help"],
                      "stack_floor_s": figures["Typer+httpx+Rich script"], "python_s": figures["python -c pass"],
                      "target_s": TARGET_SECONDS, "target_met": listing["median"] < TARGET_SECONDS}))


if __name__ == "__main__":
    main()
