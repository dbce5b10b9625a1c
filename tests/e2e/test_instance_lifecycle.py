"""A tenant's API call becomes a running PostgreSQL server, and every later call does what it says."""

from __future__ import annotations

import os
import pwd
import signal
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.support.server import ReddwarfProcesses, processes_of, wait_for


def create(client: httpx.Client, name: str, **extra: Any) -> dict[str, Any]:
    body = {
        "instance": {
            "name": name, "flavorRef": "1", "volume": {"size": 1},
            "datastore": {"type": "postgresql", "version": "15"},
            **extra,
        }
    }
    response = client.post("/instances", json=body)
    assert response.status_code == 200, response.text
    instance: dict[str, Any] = response.json()["instance"]
    assert instance["status"] == "BUILD"
    return instance


def wait_status(client: httpx.Client, instance_id: str, status: str, timeout: float = 120) -> dict[str, Any]:
    def current() -> dict[str, Any] | None:
        view: dict[str, Any] = client.get(f"/instances/{instance_id}").json()["instance"]
        if view["status"] == "ERROR" and status != "ERROR":
            raise AssertionError(f"instance went to ERROR: {view.get('fault')}")
        return view if view["status"] == status else None

    result: dict[str, Any] = wait_for(current, timeout, f"instance {instance_id} to be {status}")
    return result


def wait_gone(client: httpx.Client, instance_id: str, timeout: float = 60) -> None:
    wait_for(lambda: client.get(f"/instances/{instance_id}").status_code == 404, timeout,
             f"instance {instance_id} to be deleted")


def connect(view: dict[str, Any], user: str, password: str, dbname: str) -> psycopg.Connection[Any]:
    return psycopg.connect(host=view["addresses"][0]["address"], port=view["port"], user=user,
                           password=password, dbname=dbname, connect_timeout=5)


@pytest.fixture
def active_instance(reddwarf: ReddwarfProcesses, unique_name: str) -> Any:
    with reddwarf.client() as client:
        instance = create(client, unique_name, databases=[{"name": "app"}],
                          users=[{"name": "alice", "password": "correct horse", "databases": [{"name": "app"}]}])
        view = wait_status(client, instance["id"], "ACTIVE")
        yield client, view
        if client.get(f"/instances/{view['id']}").status_code == 200:
            client.delete(f"/instances/{view['id']}")
            wait_gone(client, view["id"])


def test_created_instance_is_a_real_server_the_tenant_user_can_use(active_instance: Any) -> None:
    _client, view = active_instance
    assert view["operating_status"] == "HEALTHY"
    assert view["datastore"]["type"] == "postgresql"
    assert view["datastore"]["version"] == "15"
    assert view["addresses"][0]["address"].startswith("127.0.90.")
    assert view["port"] == 5432
    with connect(view, "alice", "correct horse", "app") as conn:
        conn.execute("create table t (i int)")
        conn.execute("insert into t values (42)")
        row = conn.execute("select i from t").fetchone()
        assert row == (42,)
        checksums = conn.execute("show data_checksums").fetchone()
        assert checksums == ("on",)


def test_wrong_password_is_refused(active_instance: Any) -> None:
    _client, view = active_instance
    with pytest.raises(psycopg.OperationalError):
        connect(view, "alice", "wrong", "app")


def test_server_runs_as_its_own_unprivileged_user(active_instance: Any) -> None:
    _client, view = active_instance
    users = {pwd.getpwuid(Path(f"/proc/{pid}").stat().st_uid).pw_name
             for pid in _server_pids(view)}
    assert len(users) == 1
    (user,) = users
    assert user != "root"
    assert pwd.getpwnam(user).pw_uid != 0


def test_killed_server_is_restarted_and_status_shows_it(active_instance: Any) -> None:
    client, view = active_instance
    (postmaster,) = [pid for pid in _server_pids(view) if _is_postmaster(pid)]
    os.kill(postmaster, signal.SIGKILL)
    wait_for(lambda: client.get(f"/instances/{view['id']}").json()["instance"]["status"] != "ACTIVE"
             or _restarted(view, postmaster), 30, "the health sweep to notice the dead server")
    wait_for(lambda: _restarted(view, postmaster), 60, "the server to be restarted")
    healthy = wait_status(client, view["id"], "ACTIVE")
    assert healthy["operating_status"] in {"HEALTHY", ""}
    with connect(view, "alice", "correct horse", "app") as conn:
        assert conn.execute("select 1").fetchone() == (1,)


def test_restart_action(active_instance: Any) -> None:
    client, view = active_instance
    before = {pid for pid in _server_pids(view) if _is_postmaster(pid)}
    response = client.post(f"/instances/{view['id']}/action", json={"restart": {}})
    assert response.status_code == 202, response.text
    wait_for(lambda: _restarted(view, next(iter(before))), 60, "a new postmaster")
    wait_status(client, view["id"], "ACTIVE")
    with connect(view, "alice", "correct horse", "app") as conn:
        assert conn.execute("select 1").fetchone() == (1,)


def test_delete_leaves_nothing_behind(reddwarf: ReddwarfProcesses, unique_name: str) -> None:
    with reddwarf.client() as client:
        instance = create(client, unique_name)
        view = wait_status(client, instance["id"], "ACTIVE")
        user = _server_user(view)
        instance_dirs = list(reddwarf.state_dir.rglob(f"*{instance['id']}*"))
        assert instance_dirs, "the instance should have files under the state dir"
        assert client.delete(f"/instances/{instance['id']}").status_code == 202
        wait_gone(client, instance["id"])
    assert processes_of(user) == []
    with pytest.raises(KeyError):
        pwd.getpwnam(user)
    assert not [p for p in instance_dirs if p.exists()]
    assert not [line for line in Path("/proc/mounts").read_text().splitlines() if instance["id"] in line]


def test_delete_while_building_supersedes_the_create(reddwarf: ReddwarfProcesses, unique_name: str) -> None:
    with reddwarf.client() as client:
        instance = create(client, unique_name)
        assert client.delete(f"/instances/{instance['id']}").status_code == 202
        wait_gone(client, instance["id"])
    assert not [line for line in Path("/proc/mounts").read_text().splitlines() if instance["id"] in line]


def _server_pids(view: dict[str, Any]) -> list[int]:
    address = view["addresses"][0]["address"]
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if cmdline and cmdline[0].endswith(b"postgres") and _config_mentions(int(entry.name), address, view):
            pids.append(int(entry.name))
    return pids


def _config_mentions(pid: int, address: str, view: dict[str, Any]) -> bool:
    try:
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return False
    return view["id"] in cwd or view["id"][:12] in cwd


def _is_postmaster(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    ppid = int(stat.rsplit(")", 1)[1].split()[1])
    return not _is_postgres(ppid)


def _is_postgres(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].endswith(b"postgres")
    except (FileNotFoundError, IndexError):
        return False


def _restarted(view: dict[str, Any], old_pid: int) -> bool:
    return any(_is_postmaster(pid) and pid != old_pid for pid in _server_pids(view))


def _server_user(view: dict[str, Any]) -> str:
    pids = _server_pids(view)
    assert pids, "no server process found"
    return pwd.getpwuid(Path(f"/proc/{pids[0]}").stat().st_uid).pw_name


def test_every_installed_version_serves_tenants(reddwarf: ReddwarfProcesses, unique_name: str) -> None:
    with reddwarf.client() as client:
        versions = [v["name"] for v in client.get("/datastores/postgresql/versions").json()["versions"]]
        assert "15" in versions
        if os.environ.get("CI"):
            assert "18" in versions, "CI installs PostgreSQL 18 from PyPI (dev.sh test)"
        for version in versions:
            instance = create(client, f"{unique_name}-{version}", datastore={"type": "postgresql", "version": version},
                              users=[{"name": "carol", "password": "pw with spaces"}])
            view = wait_status(client, instance["id"], "ACTIVE")
            assert view["datastore"]["version_number"].startswith(version)
            with connect(view, "carol", "pw with spaces", "postgres") as conn:
                server_version = conn.execute("show server_version").fetchone()
                assert server_version is not None and server_version[0].startswith(version)
            client.delete(f"/instances/{instance['id']}")
            wait_gone(client, instance["id"])


def test_view_reports_volume_usage_and_history(active_instance: Any) -> None:
    client, view = active_instance
    shown = wait_for(lambda: (v := client.get(f"/instances/{view['id']}").json()["instance"])["volume"].get("used")
                     is not None and v, 30, "the health sweep to report volume usage")
    assert shown["volume"]["size"] == 1
    assert 0 < shown["volume"]["used"] < 1
    events = client.get(f"/instances/{view['id']}/events").json()["events"]
    messages = [e["message"] for e in events]
    assert any("ready" in m for m in messages), messages
