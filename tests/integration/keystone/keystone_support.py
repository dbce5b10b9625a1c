"""A real Keystone (PyPI `keystone`, its own venv) for the OpenStack-mode tests.

`ensure_keystone_venv()` runs `install.sh` (idempotent, cached under /var/tmp/reddwarf-keystone); in CI
(`CI=true`) a failed install fails the tests instead of skipping them. `KeystoneServer` configures one
Keystone (SQLite, fernet tokens, `keystone-manage bootstrap`) and serves it with gunicorn, ONE sync worker
(SQLite answers "database is locked" to several), on 127.0.0.1. A second server on the same database and
key repositories but a short `[token] expiration` issues tokens that expire within seconds, which the first
server then validates: the expiry test need not wait an hour.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.support.server import free_port, wait_for
from typer.testing import CliRunner

from reddwarf.cli.openstack import app as openstack_app

HERE = Path(__file__).resolve().parent
INSTALL = HERE / "install.sh"
VENV = Path(os.environ.get("REDDWARF_KEYSTONE_VENV", "/var/tmp/reddwarf-keystone/venv"))
REGION = "RegionOne"
CACHE_TTL = 5.0  # Reddwarf's validation cache TTL in these tests
SHORT_EXPIRATION = 6  # [token] expiration of the short-lived twin, seconds

CONFIG = """\
[DEFAULT]
log_file = {log}
[database]
connection = sqlite:///{db}
[token]
provider = fernet
expiration = {expiration}
[fernet_tokens]
key_repository = {fernet}
[fernet_receipts]
key_repository = {fernet}
[credential]
key_repository = {credential}
[identity]
password_hash_rounds = 4
"""


def ensure_keystone_venv() -> Path:
    """The Keystone venv, installed if missing (under a lock: parallel test runs share it)."""
    VENV.parent.mkdir(parents=True, exist_ok=True)
    with (VENV.parent / ".install.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        result = subprocess.run(["bash", str(INSTALL), str(VENV)], capture_output=True, text=True, check=False)
    if result.returncode != 0 or not (VENV / "bin" / "keystone-manage").exists():
        message = f"cannot install Keystone into {VENV}: {result.stderr[-2000:]}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return VENV


@dataclass
class KeystoneServer:
    """One gunicorn serving Keystone from `root` (config `name`.conf); `start()` / `stop()` may repeat."""

    venv: Path
    root: Path
    name: str = "keystone"
    expiration: int = 3600
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v3"

    @property
    def config(self) -> Path:
        return self.root / f"{self.name}.conf"

    def write_config(self) -> None:
        self.config.write_text(CONFIG.format(
            log=self.root / f"{self.name}.log", db=self.root / "keystone.db", expiration=self.expiration,
            fernet=self.root / "fernet-keys", credential=self.root / "credential-keys",
        ))

    def manage(self, *args: str, **env: str) -> None:
        command = [str(self.venv / "bin" / "keystone-manage"), "--config-file", str(self.config), *args]
        result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **env}, check=False,
                                timeout=300)
        assert result.returncode == 0, f"keystone-manage {args[0]} failed: {result.stderr[-3000:]}"

    def bootstrap(self, admin_password: str) -> None:
        """Database, keys, and the admin user/project/role, region and identity endpoint."""
        for repo in ("fernet-keys", "credential-keys"):
            (self.root / repo).mkdir(mode=0o700, exist_ok=True)
        self.manage("db_sync")
        self.manage("fernet_setup", "--keystone-user", "root", "--keystone-group", "root")
        self.manage("credential_setup", "--keystone-user", "root", "--keystone-group", "root")
        self.manage(
            "bootstrap", "--bootstrap-admin-url", self.url, "--bootstrap-public-url", self.url,
            "--bootstrap-internal-url", self.url, "--bootstrap-region-id", REGION,
            OS_BOOTSTRAP_PASSWORD=admin_password,  # keystone-manage reads it from the environment, not argv
        )

    def start(self) -> None:
        # Keystone parses the process's argv with oslo.config, so gunicorn gets no arguments at all: it
        # reads ./gunicorn.conf.py from its working directory.
        workdir = self.root / f"{self.name}-gunicorn"
        workdir.mkdir(exist_ok=True)
        (workdir / "gunicorn.conf.py").write_text(
            f'bind = "127.0.0.1:{self.port}"\nworkers = 1\ntimeout = 120\n'
            'wsgi_app = "keystone.server.wsgi:initialize_public_application()"\n'
        )
        env = {**os.environ, "OS_KEYSTONE_CONFIG_FILES": str(self.config)}
        with (self.root / f"{self.name}-gunicorn.log").open("ab") as log:
            self.proc = subprocess.Popen([str(self.venv / "bin" / "gunicorn")], cwd=workdir, env=env, stdout=log,
                                         stderr=log, start_new_session=True)
        wait_for(self._answers, 90, f"Keystone ({self.name}) to answer on {self.url}", interval=0.2)

    def _answers(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            log = (self.root / f"{self.name}-gunicorn.log").read_text()[-3000:]
            raise AssertionError(f"Keystone ({self.name}) exited: {log}")
        try:
            return httpx.get(self.url, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


@dataclass(frozen=True)
class User:
    name: str
    password: str
    project_name: str
    project_id: str

    def env(self, auth_url: str) -> dict[str, str]:
        """The standard OS_* variables for this user (the password never goes on a command line)."""
        return {
            "OS_AUTH_URL": auth_url, "OS_USERNAME": self.name, "OS_PASSWORD": self.password,
            "OS_PROJECT_NAME": self.project_name, "OS_USER_DOMAIN_NAME": "Default",
            "OS_PROJECT_DOMAIN_NAME": "Default", "OS_IDENTITY_API_VERSION": "3", "OS_REGION_NAME": REGION,
        }


def issue_token(auth_url: str, user: User) -> tuple[str, dict[str, Any]]:
    body = {"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": user.name, "domain": {"name": "Default"}, "password": user.password}}},
        "scope": {"project": {"name": user.project_name, "domain": {"name": "Default"}}},
    }}
    response = httpx.post(f"{auth_url}/auth/tokens", json=body, timeout=30)
    assert response.status_code == 201, response.text
    return response.headers["X-Subject-Token"], response.json()["token"]


@dataclass
class Cloud:
    """The Keystone side of the tests: an admin, a service user for Reddwarf, and two tenant projects."""

    keystone: KeystoneServer
    short: KeystoneServer
    admin: User
    service: User
    alice: User  # member of project A
    bob: User  # member of project B

    def token(self, user: User, *, short: bool = False) -> str:
        return issue_token((self.short if short else self.keystone).url, user)[0]

    def admin_call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"X-Auth-Token": self.token(self.admin), **kwargs.pop("headers", {})}
        return httpx.request(method, self.keystone.url + path, headers=headers, timeout=30, **kwargs)

    def revoke(self, token: str) -> None:
        response = self.admin_call("DELETE", "/auth/tokens", headers={"X-Subject-Token": token})
        assert response.status_code == 204, response.text


def build_cloud(keystone: KeystoneServer, short: KeystoneServer, admin_password: str) -> Cloud:
    admin_project = _admin_project_id(keystone, admin_password)
    admin = User("admin", admin_password, "admin", admin_project)

    def call(method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        token = issue_token(keystone.url, admin)[0]
        response = httpx.request(method, keystone.url + path, json=body, headers={"X-Auth-Token": token}, timeout=30)
        assert response.status_code in (200, 201, 204), response.text
        return response.json() if response.content else {}

    roles = {r["name"]: r["id"] for r in _list(keystone, admin, "/roles", "roles")}
    if "service" not in roles:
        roles["service"] = call("POST", "/roles", {"role": {"name": "service"}})["role"]["id"]

    def user(name: str, project_name: str, role: str) -> User:
        project_id = call("POST", "/projects", {"project": {"name": project_name, "domain_id": "default"}})[
            "project"]["id"]
        password = secrets.token_urlsafe(16)
        user_id = call("POST", "/users", {"user": {"name": name, "password": password, "domain_id": "default"}})[
            "user"]["id"]
        call("PUT", f"/projects/{project_id}/users/{user_id}/roles/{roles[role]}", {})
        return User(name, password, project_name, project_id)

    return Cloud(
        keystone=keystone, short=short, admin=admin, service=user("reddwarf", "service", "service"),
        alice=user("alice", "project-a", "member"), bob=user("bob", "project-b", "member"),
    )


def _list(keystone: KeystoneServer, admin: User, path: str, key: str) -> list[dict[str, Any]]:
    token = issue_token(keystone.url, admin)[0]
    response = httpx.get(keystone.url + path, headers={"X-Auth-Token": token}, timeout=30)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()[key]
    return items


def _admin_project_id(keystone: KeystoneServer, admin_password: str) -> str:
    unscoped = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": "admin", "domain": {"name": "Default"}, "password": admin_password}}}}}
    token = httpx.post(f"{keystone.url}/auth/tokens", json=unscoped, timeout=30).headers["X-Subject-Token"]
    projects = httpx.get(f"{keystone.url}/auth/projects", headers={"X-Auth-Token": token}, timeout=30).json()
    return str(next(p["id"] for p in projects["projects"] if p["name"] == "admin"))


def register(cloud: Cloud, public_url: str, **env: str) -> list[dict[str, str]]:
    """`reddwarf openstack register --public-url URL --json` as the Keystone admin (OS_* variables)."""
    result = CliRunner().invoke(
        openstack_app, ["register", "--public-url", public_url, "--json"],
        env={**cloud.admin.env(cloud.keystone.url), **env},
    )
    assert result.exit_code == 0, result.output
    changes: list[dict[str, str]] = json.loads(result.stdout)
    return changes
