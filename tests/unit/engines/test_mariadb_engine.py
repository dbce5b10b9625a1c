"""The MariaDB engine's pure parts: workload spec, capabilities, version parsing, settings."""

from __future__ import annotations

import dataclasses
import signal

import pytest

from reddwarf.domain.capabilities import Capability
from reddwarf.domain.catalog import DatastoreVersion, Flavor
from reddwarf.domain.instance import InstanceSpec
from reddwarf.domain.secret import Secret
from reddwarf.domain.workload import Placement, WorkloadSpec
from reddwarf.engines.mariadb import MariadbEngine, MariadbSettings, passwords
from reddwarf.engines.mariadb.discovery import VersionScanner, parse_version

PASSWORD = "Adm1n-pa55word-never-in-argv"
VERSION = DatastoreVersion("mariadb", "10.11", "10.11.18", "/usr/sbin")
FLAVOR = Flavor(id="2", name="small", ram_mb=1024, vcpus=1)
SPEC = InstanceSpec(name="i", flavor_id="2", volume_size_gb=2, datastore="mariadb", datastore_version="10.11")
PLACEMENT = Placement(
    instance_id="inst-1",
    os_user="rd-inst-1",
    address="127.0.1.7",
    port=3306,
    data_dir="/srv/i/volume/data",
    config_dir="/srv/i/config",
    log_dir="/srv/i/log",
    run_dir="/srv/i/run",
    socket_dir="/run/rd/i", scratch_dir="/run/rd/i-tmp",
)


@pytest.fixture
def engine() -> MariadbEngine:
    return MariadbEngine(MariadbSettings())


def test_identity(engine: MariadbEngine) -> None:
    assert (engine.name, engine.default_port, engine.admin_user) == ("mariadb", 3306, "reddwarf_admin")


def test_init_makes_private_dirs_then_installs_with_a_secret_sql_file(engine: MariadbEngine) -> None:
    workload = engine.workload(SPEC, VERSION, FLAVOR, PLACEMENT, Secret(PASSWORD))
    mkdir, install = workload.init
    assert mkdir.argv == ("/bin/mkdir", "-p", "-m", "0700", "/srv/i/volume/data/files", "/srv/i/volume/data/tmp")
    assert install.argv[:2] == ("/usr/bin/mariadb-install-db", "--no-defaults")
    for flag in (
        "--datadir=/srv/i/volume/data/db",
        "--skip-test-db",
        "--auth-root-authentication-method=normal",
        "--extra-file=/srv/i/config/.install.sql",
        "--innodb-log-file-size=128M",
    ):
        assert flag in install.argv
    (sql,) = workload.init_files
    assert sql.path == "/srv/i/config/.install.sql"
    assert sql.secret and sql.mode == 0o600
    assert passwords.native_hash(PASSWORD) in sql.content


def test_the_password_is_nowhere_in_the_clear(engine: MariadbEngine) -> None:
    workload = engine.workload(SPEC, VERSION, FLAVOR, PLACEMENT, Secret(PASSWORD))
    commands = [*workload.init, workload.server]
    digest = passwords.native_hash(PASSWORD)
    assert all(PASSWORD not in " ".join(c.argv) and digest not in " ".join(c.argv) for c in commands)
    assert all(PASSWORD not in value for c in commands for _, value in c.env)
    assert all(PASSWORD not in f.content and digest not in f.content for f in workload.files)
    assert all(PASSWORD not in f.content for f in workload.init_files)


def test_server_command_files_and_stop_signal(engine: MariadbEngine) -> None:
    workload = engine.workload(SPEC, VERSION, FLAVOR, PLACEMENT, Secret(PASSWORD))
    assert workload.server.argv == (
        "/usr/sbin/mariadbd",
        "--defaults-file=/srv/i/config/my.cnf",
        # After the file, so they win over it: the server stays where it was put.
        *("--bind-address=127.0.1.7", "--port=3306", "--socket=/run/rd/i/mysqld.sock"),
        "--secure-file-priv=/srv/i/volume/data/files",
    )
    assert workload.stop_signal == signal.SIGTERM
    cnf, ca, cert, key = workload.files
    assert cnf.path == "/srv/i/config/my.cnf" and not cnf.secret
    assert "bind_address = 127.0.1.7" in cnf.content
    # TLS files from the first start (a throwaway certificate of its own until it joins a set): MariaDB cannot
    # turn TLS on without a restart, and a replica create never restarts its source.
    assert (ca.path, cert.path, key.path) == tuple(f"/srv/i/config/tls-{n}.pem" for n in ("ca", "cert", "key"))
    assert f"ssl_cert = {cert.path}" in cnf.content and key.secret and "PRIVATE KEY" in key.content
    assert (workload.resources.memory_mb, workload.resources.vcpus, workload.resources.volume_gb) == (1024, 1, 2)
    assert dict(workload.labels) == {"datastore": "mariadb", "datastore_version": "10.11"}


def test_workload_is_pure_but_for_its_fresh_certificate(engine: MariadbEngine) -> None:
    def without_tls(workload: WorkloadSpec) -> WorkloadSpec:
        return dataclasses.replace(workload, files=tuple(f for f in workload.files if not f.fresh))

    first = engine.workload(SPEC, VERSION, FLAVOR, PLACEMENT, Secret(PASSWORD))
    again = engine.workload(SPEC, VERSION, FLAVOR, PLACEMENT, Secret(PASSWORD))
    assert without_tls(first) == without_tls(again) and first != again


def test_an_empty_admin_password_is_refused(engine: MariadbEngine) -> None:
    with pytest.raises(ValueError, match="admin password"):
        engine.workload(SPEC, VERSION, FLAVOR, PLACEMENT, Secret(""))


def test_capabilities_are_accounts_root_backups_and_replication(engine: MariadbEngine) -> None:
    capabilities = engine.capabilities(VERSION)
    assert capabilities.offered == {Capability.USERS, Capability.DATABASES, Capability.ROOT, Capability.BACKUP,
                                    Capability.REPLICATION, Capability.SYNC_REPLICATION}
    assert capabilities.backup_strategies == ("mariadb_backup", "mariadb_backup_incremental")
    assert capabilities.replication_strategies == ("gtid",)


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("mariadbd  Ver 10.11.18-MariaDB-0+deb12u1 for debian-linux-gnu on x86_64 (Debian 12)\n",
         ("10.11", "10.11.18")),
        ("/usr/sbin/mariadbd  Ver 11.4.2-MariaDB for Linux on x86_64 (MariaDB Server)", ("11.4", "11.4.2")),
        ("mysqld  Ver 8.0.36 for Linux on x86_64 (MySQL Community Server - GPL)", None),
        ("something else", None),
    ],
)  # fmt: skip
def test_version_output_is_parsed(output: str, expected: tuple[str, str] | None) -> None:
    assert parse_version(output) == expected


def test_a_missing_server_gives_no_versions() -> None:
    engine = MariadbEngine(MariadbSettings(server_binary="/nonexistent/mariadbd"))
    assert engine.versions() == []
    assert VersionScanner().scan(MariadbSettings(server_binary="/nonexistent/x").server_binary) is None


def test_settings_refuse_relative_paths() -> None:
    with pytest.raises(ValueError, match="absolute"):
        MariadbSettings(server_binary="mariadbd")
