"""Pure parts of MariaDB's GTID replication (`reddwarf.engines.mariadb.replication`, `config`): where a cleanly
stopped primary's binary log ends, how far a replica's log goes, whom a replica follows and how, and the
settings every server starts with so that it can become a source without a restart."""

from __future__ import annotations

import pytest

from reddwarf.domain.errors import PermanentError
from reddwarf.domain.secret import Secret
from reddwarf.domain.workload import Placement, Resources
from reddwarf.engines.mariadb import config, replication


def _placement(name: str, address: str) -> Placement:
    return Placement(instance_id=f"{name}-1", os_user=f"rd-{name}", address=address, port=3306,
                     data_dir=f"/srv/{name}/volume/data", config_dir=f"/srv/{name}/config", log_dir=f"/srv/{name}/log",
                     run_dir=f"/run/rd/{name}", socket_dir=f"/run/rd/{name}", scratch_dir=f"/srv/{name}/volume/tmp")


PRIMARY, REPLICA = _placement("p", "127.0.1.7"), _placement("r", "127.0.1.8")


def test_a_clean_stop_leaves_the_last_gtid_of_each_domain() -> None:
    state = "0-51-10\n0-52-7\n1-52-3\n"
    assert replication.stopped_position(state) == "0-51-10,1-52-3"


@pytest.mark.parametrize("state", ["", "\n", "garbage\n"])
def test_no_state_file_means_no_clean_stop(state: str) -> None:
    assert replication.stopped_position(state) is None


def test_how_far_a_log_goes_is_each_domains_highest_sequence() -> None:
    assert replication.gtid_seqs("0-51-10,1-3-7") == {0: 10, 1: 7}
    assert replication.gtid_seqs("0-51-10,0-52-12") == {0: 12}
    assert replication.gtid_seqs("") == {}


def test_a_replica_follows_over_verified_tls_from_its_own_binary_log() -> None:
    password = "it's a \\secret"
    sql = replication.render_follow_sql(PRIMARY, REPLICA, Secret(password))
    first, change, start = sql.splitlines()
    assert first == "SET GLOBAL gtid_slave_pos = @@GLOBAL.gtid_binlog_pos;"
    assert start == "START SLAVE;"
    assert "MASTER_HOST='127.0.1.7', MASTER_PORT=3306" in change
    assert "MASTER_PASSWORD='it\\'s a \\\\secret'" in change  # quoted: no way out of the literal
    for clause in ("MASTER_SSL=1", "MASTER_SSL_VERIFY_SERVER_CERT=1", "MASTER_USE_GTID=slave_pos",
                   "MASTER_SSL_CA='/srv/r/config/tls-ca.pem'", "MASTER_SSL_CERT='/srv/r/config/tls-cert.pem'",
                   f"MASTER_USER='{config.REPLICATION_USER}'"):
        assert clause in change


def test_every_server_can_become_a_source_and_a_replica_is_read_only() -> None:
    resources = Resources(memory_mb=1024, vcpus=1, volume_gb=2)
    single = config.render_my_cnf(PRIMARY, resources)
    for line in ("log_bin = binlog", "gtid_strict_mode = ON", "log_slave_updates = ON", "skip_slave_start = ON",
                 "binlog_format = ROW", "sync_binlog = 1", "ssl_cert = /srv/p/config/tls-cert.pem",
                 f"server_id = {config.server_id('p-1')}"):
        assert line in single.splitlines()
    assert "read_only" not in single and "init_file" not in single
    follower = config.render_my_cnf(REPLICA, resources, replica=True).splitlines()
    assert "read_only = ON" in follower and "init_file = /srv/r/config/follow.sql" in follower


def test_server_ids_are_stable_nonzero_and_differ() -> None:
    ids = {config.server_id(f"instance-{n}") for n in range(1000)}
    assert len(ids) == 1000 and all(1 <= i <= 0xFFFFFFFF for i in ids)
    assert config.server_id("instance-1") == config.server_id("instance-1")


def _replication() -> replication.MariadbReplication:
    return replication.MariadbReplication("reddwarf_admin")


def test_a_replica_restored_from_a_backup_starts_its_binary_log_where_the_backup_ends() -> None:
    commands = _replication().seed_from_backup(REPLICA, {"binlog_file": "binlog.000003", "gtid": "0-51-10,1-52-3"})
    forget, write = commands
    assert "relay-bin.*" in forget.argv and "-delete" in forget.argv  # what steered the copy as a replica goes
    *_, state, path = write.argv
    assert state == "0-51-10\n1-52-3\n"
    assert path == f"{config.layout(REPLICA).datadir}/{config.BINLOG}.state"
    assert write.argv[2].startswith('rm -f -- "$2" &&')  # never written through what the backup left there


def test_a_backup_of_a_primary_that_logged_nothing_yet_follows_from_its_first_transaction() -> None:
    commands = _replication().seed_from_backup(REPLICA, {"binlog_file": "binlog.000001", "gtid": ""})
    assert len(commands) == 1 and "-delete" in commands[0].argv  # no binlog.state written


@pytest.mark.parametrize("gtid", [None, "0-1-2;rm -rf /", "0-1-2\n0-9-99", 7])
def test_a_backup_whose_gtid_position_is_unreadable_seeds_no_replica(gtid: object) -> None:
    """Never "from the first transaction" by mistake: that replays the primary's whole binary log."""
    with pytest.raises(PermanentError, match="GTID position"):
        _replication().seed_from_backup(REPLICA, {"binlog_file": "binlog.000001", "gtid": gtid})
