"""A stable endpoint on loopback, two ways (issue 16, docs/failover.md "The writer endpoint"): an nftables
DNAT rule on the output hook, and haproxy 2.6 in TCP mode. Both in front of two Redis 7.0 servers (the
smallest requests at the highest rate: the worst case for whatever sits in the data path), measured against
connecting to the server itself.

- Throughput: `redis-benchmark` (PING, 16 clients, 200,000 requests) through each path.
- Connection set-up: connect, PING, PONG, close, 3,000 times in a row (a failed-over client reconnects).
- The switch: a client connects and asks `GET who` in a loop as fast as it can while the endpoint is moved
  from server A to server B (nftables: one `nft -f` transaction replacing the rule; haproxy: `set server
  ... addr` on its runtime socket). The gap is the last answer from A to the first from B; any answer from
  A after the switch returned is counted. A connection opened before the switch is asked again after it.

Needs root (nftables), `apt-get install nftables haproxy`. Prints each figure; the last line is one JSON
object (ratios to the direct path).

    python bench/endpoint_switch.py
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

A, B = ("127.0.184.1", 16379), ("127.0.184.2", 16379)
NAT = ("127.0.184.10", 16379)
PROXY = ("127.0.184.11", 16379)
TABLE = "reddwarf_bench"
CONNECTS = 3000


def _redis(workdir: Path, where: tuple[str, int], name: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        ["redis-server", "--bind", where[0], "--port", str(where[1]), "--save", "", "--appendonly", "no",
         "--dir", str(workdir), "--protected-mode", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    _until(lambda: _ask(where, b"PING\r\n").startswith(b"+PONG"), 10)
    _ask(where, f"SET who {name}\r\n".encode())
    return proc


def _ask(where: tuple[str, int], command: bytes, timeout: float = 1.0) -> bytes:
    try:
        with socket.create_connection(where, timeout=timeout) as conn:
            conn.sendall(command)
            return conn.recv(256)
    except OSError:
        return b""


def _until(check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError("timed out")
        time.sleep(0.02)


def _nft(script: str) -> None:
    subprocess.run(["nft", "-f", "-"], input=script.encode(), check=True)


def _nat_to(target: tuple[str, int]) -> str:
    return (f"flush chain ip {TABLE} out\n"
            f"add rule ip {TABLE} out ip daddr {NAT[0]} tcp dport {NAT[1]} dnat to {target[0]}:{target[1]}\n")


@contextlib.contextmanager
def _nat() -> Iterator[None]:
    _nft(f"add table ip {TABLE}\nadd chain ip {TABLE} out {{ type nat hook output priority -100; }}\n" + _nat_to(A))
    try:
        yield
    finally:
        subprocess.run(["nft", "delete", "table", "ip", TABLE], check=False)


@contextlib.contextmanager
def _haproxy(workdir: Path) -> Iterator[Path]:
    admin = workdir / "haproxy.sock"
    config = workdir / "haproxy.cfg"
    config.write_text(
        f"global\n  stats socket {admin} mode 600 level admin\n  maxconn 4096\n"
        "defaults\n  mode tcp\n  timeout connect 2s\n  timeout client 1h\n  timeout server 1h\n"
        f"frontend writer\n  bind {PROXY[0]}:{PROXY[1]}\n  default_backend primary\n"
        f"backend primary\n  server member {A[0]}:{A[1]}\n"
    )
    proc = subprocess.Popen(["haproxy", "-f", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _until(lambda: _ask(PROXY, b"PING\r\n").startswith(b"+PONG"), 10)
        yield admin
    finally:
        proc.terminate()
        proc.wait()


def _haproxy_to(admin: Path, target: tuple[str, int]) -> None:
    with socket.socket(socket.AF_UNIX) as conn:
        conn.connect(str(admin))
        conn.sendall(f"set server primary/member addr {target[0]} port {target[1]}\n".encode())
        answer = conn.recv(1024)
    if b"changed" not in answer and b"no need to change" not in answer:
        raise RuntimeError(f"haproxy refused the switch: {answer!r}")


def _throughput(where: tuple[str, int]) -> float:
    out = subprocess.run(["redis-benchmark", "-h", where[0], "-p", str(where[1]), "-c", "16", "-n", "200000",
                          "-t", "ping", "--csv"], capture_output=True, text=True, check=True).stdout
    rates = [float(line.split(",")[1].strip('"')) for line in out.splitlines()[1:] if line.strip()]
    return max(rates)


def _connects(where: tuple[str, int]) -> list[float]:
    took = []
    for _ in range(CONNECTS):
        start = time.perf_counter()
        if not _ask(where, b"PING\r\n").startswith(b"+PONG"):
            raise RuntimeError(f"no PONG through {where}")
        took.append(time.perf_counter() - start)
    return took


def _switch(where: tuple[str, int], switch: Callable[[], None]) -> dict[str, Any]:
    """Ask `GET who` in a loop on new connections while `switch` moves the endpoint from A to B."""
    seen: list[tuple[float, bytes]] = []
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            answer = _ask(where, b"GET who\r\n", timeout=0.5)
            seen.append((time.perf_counter(), answer))

    with socket.create_connection(where) as kept:
        kept.sendall(b"GET who\r\n")
        before = kept.recv(64)
        thread = threading.Thread(target=loop)
        thread.start()
        time.sleep(0.3)
        asked = time.perf_counter()
        switch()
        done = time.perf_counter()
        time.sleep(0.3)
        stop.set()
        thread.join()
        kept.sendall(b"GET who\r\n")
        after = kept.recv(64)
    last_a = max(t for t, answer in seen if answer.endswith(b"A\r\n"))
    first_b = min(t for t, answer in seen if answer.endswith(b"B\r\n"))
    return {
        "switch_call_ms": round((done - asked) * 1000, 2),
        "gap_ms": round((first_b - last_a) * 1000, 2),
        "answers_from_a_after_switch": sum(1 for t, answer in seen if t > done and answer.endswith(b"A\r\n")),
        "failed_asks": sum(1 for _, answer in seen if not answer.startswith(b"$")),
        "kept_connection": f"{before.split()[-1].decode()} -> {after.split()[-1].decode() if after else 'closed'}",
    }


def main() -> None:
    if shutil.which("nft") is None or shutil.which("haproxy") is None:
        raise SystemExit("needs nftables and haproxy: apt-get install nftables haproxy")
    figures: dict[str, Any] = {"benchmark": "endpoint_switch", "engine": "redis:7.0", "connects": CONNECTS}
    with tempfile.TemporaryDirectory(prefix="endpoint-switch-") as scratch:
        work = Path(scratch)
        servers = [_redis(work, A, "A"), _redis(work, B, "B")]
        try:
            with _nat(), _haproxy(work) as admin:
                paths = {"direct": A, "nftables": NAT, "haproxy": PROXY}
                for name, where in paths.items():
                    rate = _throughput(where)
                    took = sorted(_connects(where))
                    figures[name] = {"ping_per_s": rate,
                                     "connect_median_ms": round(statistics.median(took) * 1000, 3),
                                     "connect_p99_ms": round(took[int(len(took) * 0.99)] * 1000, 3)}
                    print(f"{name}: {rate:,.0f} PING/s; connect+PING median {figures[name]['connect_median_ms']} ms,"
                          f" p99 {figures[name]['connect_p99_ms']} ms", flush=True)
                figures["switch"] = {
                    "nftables": _switch(NAT, lambda: _nft(_nat_to(B))),
                    "haproxy": _switch(PROXY, lambda: _haproxy_to(admin, B)),
                }
                for name, result in figures["switch"].items():
                    print(f"switch through {name}: {result}", flush=True)
        finally:
            for proc in servers:
                proc.terminate()
                proc.wait()
    direct = figures["direct"]
    for name in ("nftables", "haproxy"):
        figures[f"ratio_{name}_ping_to_direct"] = round(figures[name]["ping_per_s"] / direct["ping_per_s"], 3)
        figures[f"ratio_{name}_connect_to_direct"] = round(
            figures[name]["connect_median_ms"] / direct["connect_median_ms"], 3)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
