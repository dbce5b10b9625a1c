"""Run in a child process by the store tests: race another process for the same store.

Usage: python store_race_helper.py MODE KEY_FILE READY_FILE GO_FILE
The store URL comes from REDDWARF_TEST_STORE_URL (never argv: it may carry a password). The child announces
itself by creating READY_FILE, waits (bounded) for GO_FILE, then:
  upgrade  runs Database.upgrade() and prints the revision;
  claim    claims operations until none is left and prints their ids, one per line;
  run      claims and "runs" operations (holds each ~20 ms, then completes it) until none has been due for
           a second, and prints `id start end` for each, one per line (times from time.time());
  pool     claims warm-pool slots of the profile postgresql 15 / flavor 1 / 1 GB until none is left and
           prints their ids, one per line.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from reddwarf.domain.pool import PoolProfile
from reddwarf.store import Database


def main() -> int:
    mode, key_file, ready_file, go_file = sys.argv[1:5]
    database = Database.from_url(os.environ["REDDWARF_TEST_STORE_URL"], key_file=Path(key_file))
    Path(ready_file).touch()
    deadline = time.monotonic() + 30
    while not Path(go_file).exists():
        if time.monotonic() > deadline:
            return 3
        time.sleep(0.005)
    worker = f"process-{os.getpid()}"
    if mode == "upgrade":
        database.upgrade()
        print(database.current_revision())
    elif mode == "claim":
        while True:
            with database.unit_of_work() as uow:
                operation = uow.operations.claim(worker, lease_ttl=300)
            if operation is None:
                break
            print(operation.id, flush=True)
    elif mode == "run":
        idle_since = time.monotonic()
        while time.monotonic() - idle_since < 1.0:
            with database.unit_of_work() as uow:
                operation = uow.operations.claim(worker, lease_ttl=300)
            if operation is None:
                time.sleep(0.01)
                continue
            started = time.time()
            time.sleep(0.02)
            ended = time.time()
            with database.unit_of_work() as uow:
                uow.operations.complete(operation.id, worker)
            print(operation.id, started, ended, flush=True)
            idle_since = time.monotonic()
    elif mode == "pool":
        profile = PoolProfile("postgresql", "15", "1", 1)
        while True:
            with database.unit_of_work() as uow:
                slot_id = uow.pool.claim(profile)
            if slot_id is None:
                break
            print(slot_id, flush=True)
    else:
        return 2
    database.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
