"""A warm interpreter that forks the `reddwarf server` and `reddwarf worker` processes the e2e and chaos tests
start (`tests.support.server.ReddwarfProcesses`).

Importing the control plane takes about two seconds of CPU (SQLAlchemy, Alembic, FastAPI, the engines'
clients), and a chaos case starts four such processes: most of its time went there. The zygote imports it
once, with no thread started, and forks a child per request; the child sets its environment, its argv and
its log file and runs the real entry point (`reddwarf.cli.main.main`), exactly as the `reddwarf` script
would, from the command's own settings on. Each child is a real process: the tests signal it (a SIGKILL at
a crash point is a real one) and wait for its exit status, which the zygote, its parent, collects.

Protocol (one JSON object per line; every request carries an `id`, echoed by its answer): the test process
writes `{"run": argv, "env": {...}, "log": path}` (answered `{"pid": n, "child": k}`: `k` a serial number that
is never reused, unlike a pid) or `{"signal": k, "number": n}` (answered `{"signalled": bool}`: false once
the child exited); the zygote writes `{"exited": k, "code": n}` (the `subprocess` convention: -N for signal
N) whenever a child ends, and `{"error": ...}` for a request it could not carry out. When the test process
goes, so do the zygote and its children (SIGTERM, then SIGKILL); a child dies with the zygote
(`PR_SET_PDEATHSIG`). A child ends as the script would: its non-daemon threads joined, `atexit` run.
"""

from __future__ import annotations

import atexit
import ctypes
import gc
import itertools
import json
import os
import random
import select
import signal
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import IO, Any

# What `reddwarf.cli.main.main` sets up before the first import (kept in step with it).
_SETUP_ENV = {"PYDANTIC_DISABLE_PLUGINS": "__all__"}
PRELOAD = ("reddwarf.cli.root", "reddwarf.cli.operator", "reddwarf.wiring", "reddwarf.api.app", "uvicorn")
_STOP_GRACE = 10.0


class Spawned:
    """A child of the zygote, as much of `subprocess.Popen` as the tests use."""

    def __init__(self, zygote: Zygote, pid: int, child: int, args: list[str]) -> None:
        self._zygote = zygote
        self.pid = pid
        self.child = child
        self.args = args

    @property
    def returncode(self) -> int | None:
        return self._zygote.exit_code(self.child)

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        code = self._zygote.wait(self.child, timeout)
        if code is None:
            raise subprocess.TimeoutExpired(self.args, timeout or 0.0)
        return code

    def send_signal(self, number: int) -> None:
        self._zygote.signal(self.child, number)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class Zygote:
    """The test process's end: one zygote per test session, started on first use."""

    def __init__(self) -> None:
        env = {**os.environ, **_SETUP_ENV}
        self._process = subprocess.Popen(
            [sys.executable, "-m", "tests.support.zygote"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            env=env, cwd=str(Path(__file__).resolve().parents[2]),
        )
        self._lock = threading.Lock()  # one request at a time
        self._changed = threading.Condition()
        self._answers: dict[int, dict[str, Any]] = {}
        self._exits: dict[int, int] = {}  # child serial number -> exit code
        self._next_request = 0
        self._reader = threading.Thread(target=self._read, name="zygote-reader", daemon=True)
        self._reader.start()

    def alive(self) -> bool:
        return self._process.poll() is None

    def spawn(self, argv: list[str], env: dict[str, str], log: Path) -> Spawned:
        answer = self._ask({"run": argv, "env": env, "log": str(log)})
        return Spawned(self, int(answer["pid"]), int(answer["child"]), ["reddwarf", *argv])

    def signal(self, child: int, number: int) -> None:
        self._ask({"signal": child, "number": int(number)})

    def exit_code(self, child: int) -> int | None:
        with self._changed:
            return self._exits.get(child)

    def wait(self, child: int, timeout: float | None) -> int | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._changed:
            while child not in self._exits:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return None
                if not self.alive():  # its children died with it (PR_SET_PDEATHSIG)
                    raise RuntimeError("the zygote ended before its child did")
                self._changed.wait(timeout=1.0 if left is None else min(left, 1.0))
            return self._exits[child]

    def _ask(self, request: dict[str, Any]) -> dict[str, Any]:
        stdin = self._process.stdin
        with self._lock:
            if stdin is None or not self.alive():
                raise RuntimeError("the zygote is not running")
            self._next_request += 1
            number = self._next_request
            stdin.write((json.dumps({**request, "id": number}) + "\n").encode())
            stdin.flush()
            deadline = time.monotonic() + 60.0
            with self._changed:
                while number not in self._answers:
                    if time.monotonic() > deadline or not self.alive():
                        raise RuntimeError(f"the zygote did not answer {sorted(request)}")
                    self._changed.wait(timeout=1.0)
                answer = self._answers.pop(number)
        if "error" in answer:
            raise RuntimeError(f"the zygote could not {sorted(request)}: {answer['error']}")
        return answer

    def _read(self) -> None:
        stdout = self._process.stdout
        assert stdout is not None
        for line in stdout:
            message = json.loads(line)
            with self._changed:
                if "exited" in message:
                    self._exits[int(message["exited"])] = int(message["code"])
                else:
                    self._answers[int(message["id"])] = message
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()


_running: list[Zygote] = []
_running_lock = threading.Lock()


def zygote() -> Zygote:
    """The test session's zygote, started on first use (and again if it ended)."""
    with _running_lock:
        if not _running or not _running[0].alive():
            _running[:] = [Zygote()]
        return _running[0]


# -- the zygote process ---------------------------------------------------------------------------------------


def _serve() -> None:
    os.environ.update(_SETUP_ENV)
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]  # as reddwarf.cli.main does
    for name in PRELOAD:
        __import__(name)
    if threading.active_count() != 1:  # a fork copies only the forking thread: no other may exist
        raise RuntimeError(f"importing {PRELOAD} started threads: {threading.enumerate()}")
    gc.collect()
    gc.freeze()  # what the imports made stays shared with every child, untouched by their collections
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    requests, answers = sys.stdin.buffer, sys.stdout
    children: dict[int, int] = {}  # pid -> serial number
    pending = b""
    try:
        while True:
            ready, _, _ = select.select([requests, wake_r], [], [])
            if wake_r in ready:
                os.read(wake_r, 4096)
            _reap(children, answers)
            if requests in ready:
                chunk = os.read(requests.fileno(), 65536)
                if not chunk:
                    break  # the test process is gone
                pending += chunk
                while b"\n" in pending:
                    line, pending = pending.split(b"\n", 1)
                    request = json.loads(line)
                    try:
                        _handle(request, children, answers, (wake_r, wake_w))
                    except Exception as exc:  # one request failed (a fork refused): the others go on
                        _send(answers, {"id": request.get("id"), "error": repr(exc)})
    finally:
        _stop_children(children)


def _handle(request: dict[str, Any], children: dict[int, int], answers: IO[str], wake: tuple[int, int]) -> None:
    if "signal" in request:
        child = int(request["signal"])
        _reap(children, answers)  # a child that ended is reaped first: its pid is never signalled again
        pid = next((pid for pid, serial in children.items() if serial == child), None)
        if pid is not None:
            os.kill(pid, int(request["number"]))
        _send(answers, {"id": request["id"], "signalled": pid is not None})
        return
    sys.stdout.flush()
    sys.stderr.flush()
    serial = _serial()
    pid = os.fork()
    if pid == 0:
        _child(list(request["run"]), dict(request["env"]), str(request["log"]), wake)
    children[pid] = serial
    _send(answers, {"id": request["id"], "pid": pid, "child": serial})


_serials = itertools.count(1)


def _serial() -> int:
    return next(_serials)


def _child(argv: list[str], env: dict[str, str], log: str, wake: tuple[int, int]) -> None:
    code = 1
    try:
        _die_with_parent()
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for fd in wake:
            os.close(fd)
        null = os.open(os.devnull, os.O_RDONLY)
        out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(null, 0)
        os.dup2(out, 1)
        os.dup2(out, 2)
        os.close(null)
        os.close(out)
        os.environ.clear()
        os.environ.update(env)
        sys.argv = ["reddwarf", *argv]
        random.seed()  # not the zygote's sequence, shared by every child
        gc.unfreeze()
        from reddwarf.cli.main import main

        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except KeyboardInterrupt:
        code = -signal.SIGINT
    except BaseException:  # whatever ended the command, its log says so
        traceback.print_exc()
    finally:
        try:
            _finish_as_the_script_would()
            if code < 0:  # as the interpreter does after an uncaught KeyboardInterrupt: die of the signal
                signal.signal(-code, signal.SIG_DFL)
                os.kill(os.getpid(), -code)
        finally:
            os._exit(1 if code < 0 else code)


def _finish_as_the_script_would() -> None:
    """What the interpreter does when the `reddwarf` script's main returns: wait for non-daemon threads, run
    the atexit functions (logging's flush among them), flush the standard streams."""
    try:
        threading._shutdown()  # type: ignore[attr-defined]
        atexit._run_exitfuncs()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()


def _die_with_parent() -> None:
    """PR_SET_PDEATHSIG: SIGKILL when the zygote ends, so that no worker outlives the test session."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(1, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")
    if os.getppid() == 1:  # the zygote ended before the call
        os._exit(1)


def _reap(children: dict[int, int], answers: IO[str]) -> None:
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        serial = children.pop(pid, None)
        if serial is not None:
            _send(answers, {"exited": serial, "code": os.waitstatus_to_exitcode(status)})


def _send(answers: IO[str], message: dict[str, Any]) -> None:
    answers.write(json.dumps(message) + "\n")
    answers.flush()


def _stop_children(children: dict[int, int]) -> None:
    for number in (signal.SIGTERM, signal.SIGKILL):
        for pid in list(children):
            try:
                os.kill(pid, number)
            except ProcessLookupError:
                children.pop(pid, None)
        deadline = time.monotonic() + _STOP_GRACE
        while children and time.monotonic() < deadline:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                time.sleep(0.05)
            else:
                children.pop(pid, None)


if __name__ == "__main__":
    _serve()
