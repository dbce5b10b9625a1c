"""Pure logic of the local runtime: layout and socket lengths, /proc parsing, addresses, settings."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest
from pydantic import ValidationError

from reddwarf.runtimes.local.addresses import pool_candidates, routable_candidates
from reddwarf.runtimes.local.paths import instance_key, layout
from reddwarf.runtimes.local.processes import ServerRecord, parse_boot_time, parse_real_uid, parse_stat
from reddwarf.runtimes.local.settings import MAX_SOCKET_PATH, LocalRuntimeSettings
from reddwarf.runtimes.local.volumes import flush, parse_mountinfo

INSTANCE = "3f2a9c1e-7b4d-4e8f-9a0b-1c2d3e4f5a6b"


def settings(**values: object) -> LocalRuntimeSettings:
    return LocalRuntimeSettings.model_validate(values)


def test_placement_derives_user_and_private_dirs_from_the_instance_id() -> None:
    paths = layout(settings(state_dir="/var/lib/reddwarf"), INSTANCE)
    placement = paths.placement("127.0.1.7", 5432)
    assert placement.os_user == "rd-3f2a9c1e7b4d"
    assert placement.data_dir == f"/var/lib/reddwarf/instances/{INSTANCE}/volume/data"
    assert placement.config_dir == f"/var/lib/reddwarf/instances/{INSTANCE}/config"
    assert placement.socket_dir == "/var/lib/reddwarf/s/3f2a9c1e7b4d"
    assert (placement.address, placement.port) == ("127.0.1.7", 5432)
    assert paths.private_dir not in {Path(p) for p in (placement.data_dir, placement.run_dir)}


def test_socket_path_stays_under_the_unix_limit() -> None:
    placement = layout(settings(), INSTANCE).placement("127.0.1.1", 5432)
    assert len((placement.socket_dir + "/.s.PGSQL.5432").encode()) < MAX_SOCKET_PATH


def test_a_socket_base_that_is_too_long_is_refused_naming_the_setting() -> None:
    with pytest.raises(ValidationError, match="REDDWARF_LOCAL_SOCKET_BASE"):
        settings(socket_base="/" + "x" * 90)


def test_instance_ids_that_are_not_hex_are_refused() -> None:
    with pytest.raises(ValueError, match="not a hex id"):
        instance_key("../../etc/passwd")
    with pytest.raises(ValueError):
        instance_key("abc")
    assert instance_key("ABCDEF01-2345-6789") == "abcdef012345"


def test_settings_parse_environment_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDDWARF_LOCAL_PORT_RANGE", "30000-30010")
    monkeypatch.setenv("REDDWARF_LOCAL_ADDRESS_POOL", "127.0.77.0/28")
    monkeypatch.setenv("REDDWARF_LOCAL_USE_CGROUPS", "false")
    loaded = LocalRuntimeSettings()
    assert loaded.port_range == (30000, 30010)
    assert loaded.address_pool == IPv4Network("127.0.77.0/28")
    assert loaded.use_cgroups == "false"
    with pytest.raises(ValidationError):
        settings(port_range=(5, 1))
    with pytest.raises(ValidationError):
        settings(user_prefix="Root;")


def test_pool_candidates_are_the_usable_hosts_in_order() -> None:
    assert list(pool_candidates(IPv4Network("127.0.77.0/29"))) == [f"127.0.77.{i}" for i in range(1, 7)]
    assert list(routable_candidates(IPv4Address("192.0.2.10"), (7000, 7002))) == [
        ("192.0.2.10", 7000),
        ("192.0.2.10", 7001),
        ("192.0.2.10", 7002),
    ]


def test_proc_stat_parsing_survives_odd_command_names() -> None:
    line = "4242 (post gres) (x)) S 1 4242 4242 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 987654 0 0"
    stat = parse_stat(line)
    assert (stat.pid, stat.comm, stat.state, stat.ppid, stat.pgrp, stat.session) == (
        4242,
        "post gres) (x)",
        "S",
        1,
        4242,
        4242,
    )
    assert stat.start_ticks == 987654
    assert not stat.dead
    assert parse_stat(line.replace(") S ", ") Z ")).dead
    with pytest.raises(ValueError):
        parse_stat("garbage")


def test_proc_status_and_boot_time_parsing() -> None:
    assert parse_real_uid("Name:\tx\nUid:\t998\t998\t998\t998\nGid:\t1\n") == 998
    assert parse_boot_time("cpu 1 2 3\nbtime 1700000000\nprocesses 5\n") == 1700000000.0


def test_server_records_round_trip() -> None:
    record = ServerRecord(pid=10, start_ticks=20, uid=30)
    assert ServerRecord.from_json(record.to_json()) == record


def test_mountinfo_parsing_unescapes_paths() -> None:
    text = (
        "36 35 98:0 / /mnt/with\\040space rw,noatime master:1 - ext4 /dev/loop3 rw\n"
        "37 35 98:0 / /proc rw shared:2 - proc proc rw\n"
    )
    entries = parse_mountinfo(text)
    assert entries[0].target == "/mnt/with space"
    assert (entries[0].source, entries[0].fstype) == ("/dev/loop3", "ext4")
    assert entries[1].fstype == "proc"


def test_write_behind_flush_syncs_a_directory_and_names_one_it_cannot_open(tmp_path: Path) -> None:
    (tmp_path / "data").write_bytes(b"x" * 4096)
    flush(tmp_path)  # syncfs(2) of the file system holding it: no error
    with pytest.raises(FileNotFoundError):
        flush(tmp_path / "gone")
    with pytest.raises(NotADirectoryError):
        flush(tmp_path / "data")
