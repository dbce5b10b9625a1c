"""PostgreSQL configuration rendering: memory from the flavor, pg_hba rules, sockets and logging."""

from __future__ import annotations

import ipaddress

import pytest

from reddwarf.domain.workload import Placement, Resources
from reddwarf.engines.postgresql import config


def _placement(address: str = "127.0.1.7") -> Placement:
    return Placement(
        instance_id="inst-1",
        os_user="rd-inst-1",
        address=address,
        port=5432,
        data_dir="/var/lib/reddwarf/instances/inst-1/data",
        config_dir="/var/lib/reddwarf/instances/inst-1/config",
        log_dir="/var/lib/reddwarf/instances/inst-1/log",
        run_dir="/var/lib/reddwarf/instances/inst-1/run",
        socket_dir="/run/reddwarf/i1", scratch_dir="/run/reddwarf/i1-tmp",
    )


def _settings(text: str) -> dict[str, str]:
    pairs = (line.split(" = ", 1) for line in text.splitlines() if line and not line.startswith("#"))
    return {name: value for name, value in pairs}


def _mb(value: str) -> float:
    if value.endswith("MB"):
        return float(value[:-2])
    assert value.endswith("kB"), value
    return float(value[:-2]) / 1024


@pytest.mark.parametrize("ram_mb", [256, 1024, 2048, 4096, 16384])
def test_memory_follows_the_flavor(ram_mb: int) -> None:
    conf = _settings(config.render_postgresql_conf(_placement(), Resources(ram_mb, 1, 2)))
    assert _mb(conf["shared_buffers"]) == pytest.approx(ram_mb * 0.25, rel=0.01)
    assert _mb(conf["effective_cache_size"]) == pytest.approx(ram_mb * 0.75, rel=0.01)
    connections = int(conf["max_connections"])
    # Every connection running a few sorts at once still fits beside shared_buffers.
    assert connections * 3 * _mb(conf["work_mem"]) <= ram_mb * 0.75 + 1
    assert _mb(conf["maintenance_work_mem"]) <= ram_mb / 8


def test_bigger_flavors_get_more_connections_and_work_mem() -> None:
    small, large = config.memory_settings(256), config.memory_settings(8192)
    assert 25 <= small.max_connections < large.max_connections <= 400
    assert small.work_mem_kb < large.work_mem_kb
    assert small.maintenance_work_mem_mb < large.maintenance_work_mem_mb


def test_wal_cannot_fill_a_small_volume() -> None:
    min_wal, max_wal = config.wal_settings(1)
    assert max_wal <= 1024 * 0.1 + 1
    assert 32 <= min_wal <= max_wal


def test_listens_on_the_placement_only_with_its_own_socket_dir() -> None:
    conf = _settings(config.render_postgresql_conf(_placement("127.0.1.9"), Resources(1024, 1, 2)))
    assert conf["listen_addresses"] == "'127.0.1.9'"
    assert conf["port"] == "5432"
    assert conf["unix_socket_directories"] == "'/run/reddwarf/i1'"
    assert conf["hba_file"] == "'/var/lib/reddwarf/instances/inst-1/config/pg_hba.conf'"
    assert conf["ident_file"] == "'/var/lib/reddwarf/instances/inst-1/config/pg_ident.conf'"
    assert conf["password_encryption"] == "'scram-sha-256'"


def test_statements_never_reach_the_log() -> None:
    conf = _settings(config.render_postgresql_conf(_placement(), Resources(1024, 1, 2)))
    assert conf["log_statement"] == "'none'"
    assert conf["log_min_error_statement"] == "panic"
    assert conf["logging_collector"] == "off"
    assert conf["log_destination"] == "'stderr'"


def test_quotes_in_paths_are_escaped() -> None:
    assert config.quote("/srv/it's") == "'/srv/it''s'"
    with pytest.raises(ValueError, match="line breaks"):
        config.quote("/srv/a\nlisten_addresses = '*'")


def _hba_rows(text: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines() if line and not line.startswith("#")]


def test_hba_requires_scram_everywhere_and_never_trusts() -> None:
    text = config.render_pg_hba(_placement("127.0.1.7"), "reddwarf_admin")
    rows = _hba_rows(text)
    assert "trust" not in text
    assert ["local", "all", "all", "scram-sha-256"] in rows
    assert ["host", "all", "all", "127.0.0.1/32", "scram-sha-256"] in rows
    assert ["host", "all", "all", "127.0.1.7/32", "scram-sha-256"] in rows
    assert ["host", "replication", "all", "127.0.0.1/32", "scram-sha-256"] in rows
    # The one exception: the replication role, by the OS user of a set member's server, over the socket (to
    # stream, and for a former primary's pg_rewind to read files).
    assert rows[0] == ["local", "replication", "reddwarf_replicator", "peer", "map=reddwarf_members"]
    assert rows[1] == ["local", "postgres", "reddwarf_replicator", "peer", "map=reddwarf_members"]
    assert all(row[-1] in {"scram-sha-256", "reject"} for row in rows[2:])


def test_the_ident_map_admits_only_the_set_members_os_users_as_the_replication_role() -> None:
    assert config.render_pg_ident().splitlines()[1:] == []
    text = config.render_pg_ident(("rd-aaaaaaaaaaaa", "rd-bbbbbbbbbbbb"))
    assert text.splitlines()[1:] == [
        "reddwarf_members rd-aaaaaaaaaaaa reddwarf_replicator", "reddwarf_members rd-bbbbbbbbbbbb reddwarf_replicator",
    ]
    with pytest.raises(ValueError, match="cannot appear"):
        config.render_pg_ident(("rd-a reddwarf_admin",))


def test_hba_admits_allowed_networks_but_not_the_admin_from_them() -> None:
    networks = [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("2001:db8::/32")]
    rows = _hba_rows(config.render_pg_hba(_placement(), "reddwarf_admin", networks))
    reject = rows.index(["host", "all", '"reddwarf_admin"', "all", "reject"])
    assert rows.index(["host", "all", "all", "10.0.0.0/8", "scram-sha-256"]) > reject
    assert rows.index(["host", "all", "all", "2001:db8::/32", "scram-sha-256"]) > reject


def test_hba_loopback_address_is_not_repeated() -> None:
    rows = _hba_rows(config.render_pg_hba(_placement("127.0.0.1"), "reddwarf_admin"))
    assert rows.count(["host", "all", "all", "127.0.0.1/32", "scram-sha-256"]) == 1
