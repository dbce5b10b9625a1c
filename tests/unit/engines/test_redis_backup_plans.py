"""The pure parts of Redis's backups: waiting for a snapshot that started after the request, the tool and
the restore plan (the snapshot laid down as the AOF's base)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis

from reddwarf.domain.backup import ChainLink, ParentBackup
from reddwarf.domain.catalog import DatastoreVersion
from reddwarf.domain.errors import PermanentError, TemporaryError
from reddwarf.domain.secret import Secret
from reddwarf.domain.workload import Placement
from reddwarf.engines.redis import RedisEngine
from reddwarf.engines.redis.backup import FULL_STRATEGY, NO_INCREMENTALS, RedisBackups, snapshot

VERSION = DatastoreVersion("redis", "7.0", "7.0.15", "/usr/bin")
PLACEMENT = Placement(
    instance_id="i-1", os_user="rd-abc", address="127.0.1.9", port=6379, data_dir="/srv/i/volume/data",
    config_dir="/srv/i/config", log_dir="/srv/i/volume/log", run_dir="/srv/i/run", socket_dir="/run/rd/abc",
    scratch_dir="/srv/i/volume/tmp",
)


class Server:
    """A Redis double: each INFO returns the next state; BGSAVE answers from `bgsave`."""

    def __init__(self, now: int, states: list[dict[str, Any]], bgsave: list[object]) -> None:
        self.now = now
        self.states: Iterator[dict[str, Any]] = iter(states)
        self.bgsave = list(bgsave)
        self.asked = 0

    def time(self) -> tuple[int, int]:
        return (self.now, 0)

    def info(self, section: str) -> dict[str, Any]:
        return next(self.states)

    def execute_command(self, *args: Any) -> Any:
        assert args == ("BGSAVE",)
        self.asked += 1
        answer = self.bgsave.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def state(busy: int, status: str = "ok", last: int = 0) -> dict[str, Any]:
    return {"rdb_bgsave_in_progress": busy, "rdb_last_bgsave_status": status, "rdb_last_save_time": last}


def test_a_save_already_running_is_waited_out_then_ours_is_waited_for() -> None:
    server = Server(1000, [state(1, last=900), state(0, last=990), state(1, last=990), state(0, last=1000)],
                    ["Background saving started"])
    assert snapshot(server, timeout=10.0) == 1000  # type: ignore[arg-type]
    assert server.asked == 1


def test_a_save_refused_because_another_child_runs_is_asked_again() -> None:
    busy = redis.ResponseError("Another child process is active (AOF?): can't BGSAVE right now.")
    server = Server(1000, [state(0, last=900), state(0, last=900), state(1), state(0, last=1001)],
                    [busy, "Background saving started"])
    assert snapshot(server, timeout=10.0) == 1001  # type: ignore[arg-type]
    assert server.asked == 2


def test_a_failed_save_is_a_permanent_error_and_a_slow_one_a_temporary_one() -> None:
    failing = Server(1000, [state(0), state(0, status="err", last=900)], ["Background saving started"])
    with pytest.raises(PermanentError, match="could not write its snapshot"):
        snapshot(failing, timeout=10.0)  # type: ignore[arg-type]
    ticks = iter(range(100))
    slow = Server(1000, [state(0)] + [state(1)] * 50, ["Background saving started"])
    with pytest.raises(TemporaryError, match="did not finish"):
        snapshot(slow, timeout=3.0, clock=lambda: float(next(ticks)))  # type: ignore[arg-type]


def backups() -> RedisBackups:
    return RedisEngine().backups(VERSION)


def test_incrementals_are_refused() -> None:
    assert backups().strategies().incremental is None and backups().strategies().reason == NO_INCREMENTALS
    with pytest.raises(PermanentError, match="no incremental"):
        backups().backup(PLACEMENT, Secret("pw"), ParentBackup("b", {}, {}))


def test_the_tool_packs_the_snapshot_and_the_acl_file_as_the_instance_user() -> None:
    tool = backups().backup(PLACEMENT, Secret("admin-pw-secret"), None).tool
    assert tool.as_instance and not tool.files
    assert tool.argv[-3:] == ("/srv/i/volume/data/dump.rdb", "/srv/i/config/users.acl", "/bin/tar")
    assert all("admin-pw-secret" not in part for part in tool.argv)


def test_the_restore_lays_the_snapshot_down_as_the_aofs_base() -> None:
    plan = backups().restore(PLACEMENT, [ChainLink("b", FULL_STRATEGY, {}, {})])
    (extract,) = plan.extract
    assert extract.as_instance and extract.stdin and extract.argv[-2:] == ("/srv/i/volume/tmp/restore", "/bin/tar")
    place, clean = plan.init
    assert place.argv[-5:] == ("/srv/i/volume/tmp/restore/0", "/srv/i/volume/data", "/srv/i/config",
                               "appendonlydir", "appendonly.aof")
    assert "seq 1 type b" in place.argv[2]
    assert clean.argv == ("/bin/rm", "-rf", "--", "/srv/i/volume/tmp/restore")
    with pytest.raises(PermanentError):
        backups().restore(PLACEMENT, [ChainLink("b", FULL_STRATEGY, {}, {})] * 2)
