"""A rejoin's choice between rewinding a fenced former primary and replacing its data with a new seed: only
when pg_rewind says it cannot be done (its words, as PostgreSQL 15 to 18 print them) is the data directory
emptied; any other failure leaves it as it is (it may hold the only copy of what it wrote last)."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import cast

import pytest

from reddwarf.domain.catalog import DatastoreVersion
from reddwarf.domain.errors import PermanentError
from reddwarf.domain.secret import Secret
from reddwarf.domain.workload import Placement, ToolSpec
from reddwarf.engines.postgresql import PostgresqlEngine, PostgresqlSettings
from reddwarf.workflows.reconcilers import failover
from reddwarf.workflows.reconcilers.deps import ReconcilerDeps
from reddwarf.workflows.reconcilers.switchover import COPY_TIMEOUT

VERSION = DatastoreVersion("postgresql", "15", "15.18", "/usr/lib/postgresql/15/bin")


def _placement(name: str) -> Placement:
    return Placement(instance_id=name, os_user=f"rd-{name}", address="127.0.1.7", port=5432,
                     data_dir=f"/srv/{name}/data", config_dir=f"/srv/{name}/config", log_dir=f"/srv/{name}/log",
                     run_dir=f"/srv/{name}/run", socket_dir=f"/srv/{name}/sock", scratch_dir=f"/srv/{name}/tmp")


def _rejoin(monkeypatch: pytest.MonkeyPatch, rewind_error: str) -> list[str]:
    """Run the rejoin's rewind step with pg_rewind failing with `rewind_error`; the tools that ran."""
    ran: list[str] = []

    def run_tool(deps: ReconcilerDeps, placement: Placement, tool: ToolSpec, timeout: float = 60.0) -> bytes:
        assert timeout == COPY_TIMEOUT  # a rewind or a seed copies data: never the short tools' minute
        ran.append(PurePosixPath(tool.argv[0]).name)
        if tool.argv[0].endswith("/pg_rewind"):
            raise PermanentError("pg_rewind from the new primary of instance old failed (exit status 1)",
                                 details=rewind_error)
        return b""

    monkeypatch.setattr(failover, "run_tool", run_tool)
    replication = PostgresqlEngine(PostgresqlSettings()).replication(VERSION)
    assert replication is not None
    checkpoints: list[str] = []
    monkeypatch.setattr(replication, "before_rewind", lambda upstream, admin: checkpoints.append(upstream.instance_id))
    rejoin = failover.RejoinMember(cast(ReconcilerDeps, object()))
    reseed = rejoin._rewind(replication, _placement("new"), _placement("old"), "set", Secret("admin"))["reseed"]
    assert checkpoints == ["new"]  # the new primary checkpointed first: its control file names its timeline
    if reseed:
        rejoin._reseed(replication, _placement("new"), _placement("old"), "set", "reddwarf_old")
    return ran


@pytest.mark.parametrize("error", [
    "pg_rewind: servers diverged at WAL location 0/5000A28 on timeline 1\n"
    "pg_rewind: error: could not open file \"/srv/old/data/pg_wal/000000010000000000000004\": No such file\n"
    "pg_rewind: error: could not find previous WAL record at 0/4FFFF98",
    "pg_rewind: error: could not read WAL record at 0/5000A28: invalid record length at 0/5000A28",
    "pg_rewind: error: could not find common ancestor of the source and target cluster's timelines",
])
def test_a_former_primary_that_cannot_be_rewound_is_seeded_again(monkeypatch: pytest.MonkeyPatch, error: str) -> None:
    # Emptied, seeded through its slot, disarmed, and flushed to its volume before anything starts it.
    assert _rejoin(monkeypatch, error) == ["pg_rewind", "find", "pg_basebackup", "rm", "sync"]


@pytest.mark.parametrize("error", [
    "pg_rewind: error: connection to server on socket \"/srv/new/sock/.s.PGSQL.5432\" failed: server closed",
    "pg_rewind: error: source and target clusters are from different systems",
    "pg_rewind: error: could not write file \"/srv/old/data/base/5/1259\": No space left on device",
    "pg_rewind from the new primary of instance old did not finish within 21600s",
    # The WAL may be there: a disk error is no reason to throw the data away.
    "pg_rewind: error: could not open file \"/srv/old/data/pg_wal/000000010000000000000004\": Input/output error\n"
    "pg_rewind: error: could not find previous WAL record at 0/4FFFF98",
    # The words, but not pg_rewind's last error (another program's output, say the tenant's log_line_prefix).
    "LOG:  could not find previous WAL record at 0/1\npg_rewind: error: target server must be shut down cleanly",
])
def test_any_other_rewind_failure_keeps_the_data_and_the_fence(monkeypatch: pytest.MonkeyPatch, error: str) -> None:
    with pytest.raises(PermanentError):
        _rejoin(monkeypatch, error)
