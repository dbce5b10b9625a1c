"""The pure parts of MariaDB's backups: what the tool leaves behind, parsed defensively; the tool's command
line; the restore plan and its chain checks; the backup account spared by the account hardening."""

from __future__ import annotations

import pytest

from reddwarf.domain.backup import ChainLink, ParentBackup
from reddwarf.domain.catalog import DatastoreVersion
from reddwarf.domain.errors import PermanentError
from reddwarf.domain.secret import Secret
from reddwarf.domain.workload import WORK_DIR, Placement
from reddwarf.engines.mariadb import MariadbEngine, admin
from reddwarf.engines.mariadb.backup import (
    CHECKPOINTS,
    FULL_STRATEGY,
    INCREMENTAL_STRATEGY,
    INFO,
    MariadbBackups,
    parse_checkpoints,
    parse_info,
)

VERSION = DatastoreVersion("mariadb", "10.11", "10.11.19", "/usr/sbin")
PLACEMENT = Placement(
    instance_id="i-1", os_user="rd-abc", address="127.0.1.9", port=3306, data_dir="/srv/i/volume/data",
    config_dir="/srv/i/config", log_dir="/srv/i/volume/log", run_dir="/srv/i/run", socket_dir="/run/rd/abc",
    scratch_dir="/srv/i/volume/tmp",
)
PASSWORD = "admin-Secret-pw-1"
FULL_POINTS = b"backup_type = full-backuped\nfrom_lsn = 0\nto_lsn = 44420\nlast_lsn = 48078\nrecover_binlog_info = 0\n"
INC_POINTS = b"backup_type = incremental\nfrom_lsn = 44420\nto_lsn = 50100\nlast_lsn = 50678\n"
# As mariadb-backup 10.11.19 wrote it for a server with log_bin on (measured).
INFO_WITH_BINLOG = (
    b"uuid = 00f2f62f-efe6-11f1-8052-02fc00000001\nname = \ntool_name = mariadb-backup\n"
    b"tool_version = 10.11.19-MariaDB\nserver_version = 10.11.19-MariaDB-0+deb12u1\n"
    b"binlog_pos = filename 'binlog.000001', position '1191', GTID of the last change '0-7-5'\n"
    b"innodb_from_lsn = 0\ninnodb_to_lsn = 44420\n"
)


def backups() -> MariadbBackups:
    return MariadbEngine().backups(VERSION)


def test_checkpoints_give_the_lsns() -> None:
    points = parse_checkpoints(FULL_POINTS)
    assert (points.backup_type, points.from_lsn, points.to_lsn, points.last_lsn) == ("full-backuped", 0, 44420, 48078)


@pytest.mark.parametrize("raw", [
    b"",
    b"backup_type = full-backuped\nfrom_lsn = 0\nto_lsn = -1\nlast_lsn = 5\n",
    b"backup_type = full-backuped\nfrom_lsn = 0\nto_lsn = 99999999999999999999999\nlast_lsn = 5\n",
    b"backup_type = full-backuped\nfrom_lsn = 10\nto_lsn = 5\nlast_lsn = 50\n",
    b"backup_type = bogus\nfrom_lsn = 0\nto_lsn = 5\nlast_lsn = 50\n",
    b"x" * (2 << 20),
])
def test_checkpoints_a_tenant_spoiled_are_refused(raw: bytes) -> None:
    with pytest.raises(PermanentError):
        parse_checkpoints(raw)


def test_info_gives_versions_binlog_position_and_gtid() -> None:
    info = parse_info(INFO_WITH_BINLOG)
    assert info == {
        "server_version": "10.11.19-MariaDB-0+deb12u1", "tool_version": "10.11.19-MariaDB",
        "binlog_file": "binlog.000001", "binlog_position": 1191, "gtid": "0-7-5",
    }


def test_info_without_binlog_or_with_garbage_gives_none() -> None:
    assert parse_info(b"binlog_pos = \n")["gtid"] is None
    spoiled = parse_info(b"binlog_pos = filename 'b.1', position '7', GTID of the last change 'x; DROP'\n"
                         b"server_version = \x1b[31mred\n")
    assert spoiled["gtid"] is None and spoiled["binlog_position"] == 7 and spoiled["server_version"] is None


def test_info_tells_an_empty_gtid_position_from_a_missing_or_long_one() -> None:
    empty = parse_info(b"binlog_pos = filename 'binlog.000001', position '329', GTID of the last change ''\n")
    assert empty["gtid"] == "" and empty["binlog_file"] == "binlog.000001"
    assert parse_info(b"binlog_pos = filename 'binlog.000001', position '329'\n")["gtid"] is None
    many = ",".join(f"{d}-4000000000-123456789" for d in range(9))  # longer than a few hundred characters
    line = f"binlog_pos = filename 'binlog.000001', position '329', GTID of the last change '{many}'\n"
    assert parse_info(line.encode())["gtid"] == many


def test_the_tool_runs_as_the_instance_user_with_no_option_file_and_no_secret() -> None:
    run = backups().backup(PLACEMENT, Secret(PASSWORD), None)
    tool = run.tool
    assert tool.as_instance and not tool.files and not tool.stdin
    assert tool.argv[:3] == ("/usr/bin/mariadb-backup", "--no-defaults", "--backup")
    assert "--user=rd-abc" in tool.argv and "--socket=/run/rd/abc/mysqld.sock" in tool.argv
    assert f"--extra-lsndir={WORK_DIR}/lsn" in tool.argv
    assert not any("incremental" in part for part in tool.argv)
    assert tool.collect == (CHECKPOINTS, INFO)
    assert all(PASSWORD not in part for part in tool.argv)


def test_an_incremental_starts_at_its_parents_to_lsn_and_must_continue_it() -> None:
    parent = ParentBackup("b-full", {"to_lsn": 44420}, {})
    run = backups().backup(PLACEMENT, Secret(PASSWORD), parent)
    assert "--incremental-lsn=44420" in run.tool.argv
    result = run.finish({CHECKPOINTS: INC_POINTS, INFO: b""})
    assert result.metadata["from_lsn"] == 44420 and result.metadata["to_lsn"] == 50100
    assert result.metadata["incremental"] is True and result.metadata["gtid"] is None
    with pytest.raises(PermanentError, match="starts at LSN"):
        run.finish({CHECKPOINTS: INC_POINTS.replace(b"from_lsn = 44420", b"from_lsn = 40000")})
    with pytest.raises(PermanentError, match="no LSN"):
        backups().backup(PLACEMENT, Secret(PASSWORD), ParentBackup("b-odd", {"to_lsn": "44420"}, {}))


def test_a_full_backup_records_lsns_gtid_and_version() -> None:
    result = backups().backup(PLACEMENT, Secret(PASSWORD), None).finish(
        {CHECKPOINTS: FULL_POINTS, INFO: INFO_WITH_BINLOG}
    )
    assert result.metadata["to_lsn"] == 44420 and result.metadata["gtid"] == "0-7-5"
    assert result.metadata["version"] == "10.11" and result.metadata["incremental"] is False


def link(backup_id: str, strategy: str, start: int, end: int) -> ChainLink:
    return ChainLink(backup_id, strategy, {"from_lsn": start, "to_lsn": end}, {})


def test_the_restore_plan_unpacks_each_link_then_prepares_applies_and_moves_into_the_datadir() -> None:
    chain = [link("f", FULL_STRATEGY, 0, 100), link("i1", INCREMENTAL_STRATEGY, 100, 200),
             link("i2", INCREMENTAL_STRATEGY, 200, 300)]
    plan = backups().restore(PLACEMENT, chain)
    assert len(plan.extract) == 3
    for index, tool in enumerate(plan.extract):
        assert tool.as_instance and tool.stdin
        assert tool.argv[-3:] == ("/srv/i/volume/tmp/restore", str(index), "/usr/bin/mbstream")
    commands = [command.argv for command in plan.init]
    base = "--target-dir=/srv/i/volume/tmp/restore/0"
    assert commands[1][:4] == ("/usr/bin/mariadb-backup", "--no-defaults", "--prepare", base)
    assert "--incremental-dir=/srv/i/volume/tmp/restore/1" in commands[2]
    assert "--incremental-dir=/srv/i/volume/tmp/restore/2" in commands[3]
    assert commands[4] == ("/usr/bin/mariadb-backup", "--no-defaults", "--move-back", base,
                           "--datadir=/srv/i/volume/data/db")
    assert commands[5] == ("/bin/rm", "-rf", "--", "/srv/i/volume/tmp/restore")


@pytest.mark.parametrize("chain", [
    [],
    [link("i", INCREMENTAL_STRATEGY, 100, 200)],
    [link("f", FULL_STRATEGY, 0, 100), link("i", INCREMENTAL_STRATEGY, 150, 200)],
    [link("f", FULL_STRATEGY, 0, 100), link("f2", FULL_STRATEGY, 0, 200)],
])
def test_a_broken_chain_is_refused(chain: list[ChainLink]) -> None:
    with pytest.raises(PermanentError):
        backups().restore(PLACEMENT, chain)


def test_only_the_instances_own_socket_account_is_spared() -> None:
    socket = {"plugin": "unix_socket", "authentication_string": ""}
    assert admin.is_backup_account("rd-abc", "localhost", socket, "rd-abc")
    assert not admin.is_backup_account("rd-abc", "%", socket, "rd-abc")
    assert not admin.is_backup_account("rd-other", "localhost", socket, "rd-abc")
    assert not admin.is_backup_account("rd-abc", "localhost", socket, None)
    either = {**socket, "auth_or": [{}, {"plugin": "mysql_native_password", "authentication_string": ""}]}
    assert not admin.is_backup_account("rd-abc", "localhost", either, "rd-abc")
