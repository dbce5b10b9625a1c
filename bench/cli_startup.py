"""CLI start-up benchmark: wall-clock time of `reddwarf instance list` and `reddwarf --help`.

`reddwarf instance list` runs against a stub HTTP endpoint in this process (a `ThreadingHTTPServer` on a
free loopback port answering `GET /v1.0/<project>/instances` with three instances), or against a running
server with `--endpoint` (then REDDWARF_TOKEN and REDDWARF_PROJECT must be set). Each command runs `--runs`
times as a fresh process (the installed `reddwarf` script next to this Python); one warm-up run is not
counted. Prints the median, p95 and best wall-clock time of each (and the median CPU time, which other
load on the machine moves less), the target (tenant commands under 0.3 s), and, as its
last line, one JSON object with the figures.

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


def _measure(label: str, argv: list[str], env: dict[str, str], runs: int) -> dict[str, float]:
    _time(argv, env)  # warm-up: the page cache, not Reddwarf, would otherwise decide the first run
    runs_ = [_time(argv, env) for _ in range(runs)]
    samples = sorted(wall for wall, _ in runs_)
    figures = {
        "median": round(statistics.median(samples), 3),
        "p95": round(samples[min(len(samples) - 1, round(0.95 * (len(samples) - 1)))], 3),
        "best": round(samples[0], 3),
        "cpu_median": round(statistics.median(cpu for _, cpu in runs_), 3),
    }
    print(f"{label:<28} median {figures['median']:.3f} s  p95 {figures['p95']:.3f} s  best {figures['best']:.3f} s"
          f"  (CPU median {figures['cpu_median']:.3f} s)")
    return figures


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
        print(f"reddwarf CLI start-up, {args.runs} runs each ({'stub endpoint' if stub else args.endpoint})")
        listing = _measure("reddwarf instance list", [REDDWARF, "instance", "list"], env, args.runs)
        help_ = _measure("reddwarf --help", [REDDWARF, "--help"], env, args.runs)
        interpreter = _measure("python -c pass (floor)", [sys.executable, "-c", "pass"], env, args.runs)
    finally:
        if stub is not None:
            stub.shutdown()
    verdict = "met" if listing["median"] < TARGET_SECONDS else "MISSED"
    print(f"target: tenant commands start in under {TARGET_SECONDS} s (median of `instance list`): {verdict}")
    print(json.dumps({"benchmark": "cli_startup", "runs": args.runs, "endpoint": "stub" if stub else args.endpoint,
                      "instance_list_s": listing, "help_s": help_, "python_floor_s": interpreter,
                      "target_s": TARGET_SECONDS, "target_met": listing["median"] < TARGET_SECONDS}))


if __name__ == "__main__":
    main()
