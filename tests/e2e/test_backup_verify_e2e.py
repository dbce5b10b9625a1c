"""Verified backups through the whole house on a real PostgreSQL 15 (`REDDWARF_VERIFY_BACKUPS=true`): a backup
of an instance with a tenant table is restored into a throwaway server, amcheck runs on its indexes, the
verdict shows on the backup, and nothing of the throwaway is left (OS user, process, mount, directory).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from reddwarf.client import UserRequest
from reddwarf.domain.secret import Secret
from tests.support.server import (
    ACTIVE_TIMEOUT,
    DELETE_TIMEOUT,
    ReddwarfProcesses,
    instance_users,
    processes_of,
    running_plane,
)

PASSWORD = "verify-pw-0b1c"
VERIFY_TIMEOUT = 120.0


@pytest.fixture(scope="module")
def verifying() -> Iterator[ReddwarfProcesses]:
    with running_plane("verify", "127.0.89.0/24", REDDWARF_VERIFY_BACKUPS="true") as procs:
        yield procs


def test_a_postgresql_backup_is_restored_checked_and_the_throwaway_removed(verifying: ReddwarfProcesses) -> None:
    with verifying.tenant() as client:
        created = client.create_instance(
            "verified", "1", 1, datastore="postgresql", version="15", databases=["app"],
            users=[UserRequest(name="alice", password=Secret(PASSWORD), databases=("app",))],
        )
        source = client.wait_for_instance(created.id, timeout=ACTIVE_TIMEOUT)
        assert source.address is not None
        with psycopg.connect(host=source.address, port=5432, user="alice", password=PASSWORD, dbname="app",
                             autocommit=True, connect_timeout=5) as conn:
            conn.execute("create table t (id int primary key, v text)")
            conn.execute("insert into t select g, md5(g::text) from generate_series(1, 10000) g")
        try:
            backup = client.backups.wait_for_backup(client.backups.create_backup("b", source.id).id, timeout=120)
            deadline = time.monotonic() + VERIFY_TIMEOUT
            while backup.verified is None and time.monotonic() < deadline:
                time.sleep(0.5)
                backup = client.backups.get_backup(backup.id)
            assert backup.verified is True, (backup, verifying.log_tail())
            assert backup.verified_at is not None and backup.verification is not None
            assert "pg_verifybackup passed" in backup.verification, backup.verification
            checked = re.search(r"bt_index_check on (\d+) B-tree indexes", backup.verification)
            assert checked is not None and int(checked.group(1)) > 100, backup.verification  # catalogs and t_pkey
            assert backup.status == "COMPLETED"
            # The throwaway lived under the backup's id: nothing of it is left, and no instance ever showed.
            user = verifying.os_user(backup.id)
            assert user not in instance_users(verifying.user_prefix)
            assert processes_of(user) == []
            mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
            assert not [m for m in mounts if backup.id.lower() in m], mounts
            assert not (verifying.state_dir / "instances" / backup.id.lower()).exists()
            assert [i.id for i in client.list_instances()] == [source.id]
        finally:
            client.delete_instance(source.id)
            client.wait_for_delete(source.id, timeout=DELETE_TIMEOUT)
