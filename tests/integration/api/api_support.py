"""Helpers for the API integration tests: the real app on a real store (SQLite file) with a fake engine.

No database server is needed: `tests.fakes.engines.FakeEngine` has a fixed catalogue (postgresql 16 and 15
active, 14 inactive) and refuses the reserved user name "postgres", so that the API's pass-through of an
engine's own validation is exercised.
"""

from __future__ import annotations

import shutil
import sqlite3
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

with warnings.catch_warnings():
    # Starlette 1.x deprecates driving its TestClient with httpx (it wants `httpx2`, not a dependency
    # here); the deprecation is about packaging, not behaviour, so only that one warning is silenced.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient` is deprecated")
    from fastapi.testclient import TestClient

from tests.fakes.clock import FakeClock
from tests.fakes.engines import FakeEngine

from reddwarf.api.app import create_app
from reddwarf.identity.tokens import issue_token
from reddwarf.services.context import ServiceContext
from reddwarf.settings import Settings
from reddwarf.store.database import Database


@dataclass
class Api:
    """The running app plus handles a test needs: tokens per role, the store, the clock."""

    client: TestClient
    ctx: ServiceContext
    db: Database
    db_path: Path
    clock: FakeClock
    project: str
    other_project: str
    admin_project: str
    tokens: dict[str, str] = field(default_factory=dict)

    def headers(self, who: str = "member") -> dict[str, str]:
        return {"X-Auth-Token": self.tokens[who]}

    def url(self, path: str, project: str | None = None) -> str:
        return f"/v1.0/{project or self.project}{path}"

    def get(self, path: str, who: str = "member", project: str | None = None, **kw: Any) -> Any:
        return self.client.get(self.url(path, project), headers=self.headers(who), **kw)

    def post(self, path: str, body: Any, who: str = "member", project: str | None = None) -> Any:
        return self.client.post(self.url(path, project), json=body, headers=self.headers(who))

    def put(self, path: str, body: Any, who: str = "member", project: str | None = None) -> Any:
        return self.client.put(self.url(path, project), json=body, headers=self.headers(who))

    def patch(self, path: str, body: Any, who: str = "member", project: str | None = None) -> Any:
        return self.client.patch(self.url(path, project), json=body, headers=self.headers(who))

    def delete(self, path: str, who: str = "member", project: str | None = None) -> Any:
        return self.client.delete(self.url(path, project), headers=self.headers(who))

    def count(self, table: str, where: str = "1=1", *args: Any) -> int:
        """Rows of a store table, read straight from the SQLite file (what was really written)."""
        with sqlite3.connect(self.db_path) as raw:
            return int(raw.execute(f"SELECT count(*) FROM {table} WHERE {where}", args).fetchone()[0])

    def operations(self, resource_id: str | None = None) -> list[tuple[str, str]]:
        """(kind, state) of every operation, oldest first, optionally for one resource."""
        with sqlite3.connect(self.db_path) as raw:
            query = "SELECT kind, state FROM operations"
            rows = (raw.execute(query + " WHERE resource_id = ? ORDER BY created", (resource_id,))
                    if resource_id else raw.execute(query + " ORDER BY created"))
            return [(str(k), str(s)) for k, s in rows.fetchall()]


def migrated_template(directory: Path) -> Path:
    """An empty store migrated to head, to copy per test (migrating every test's store is slow)."""
    path = directory / "template.db"
    db = Database.from_url(f"sqlite:///{path}", key_file=directory / "secret.key")
    db.upgrade()
    db.dispose()
    return path


def build_api(
    tmp_path: Path, *, template: Path | None = None, engines: dict[str, Any] | None = None, **settings: Any
) -> Iterator[Api]:
    db_path = tmp_path / "reddwarf.db"
    if template is not None:
        shutil.copyfile(template, db_path)
    db = Database.from_url(f"sqlite:///{db_path}", key_file=tmp_path / "secret.key")
    db.upgrade()
    clock = FakeClock()
    config = Settings(state_dir=tmp_path / "state", **settings)
    ctx = ServiceContext.build(config, db, engines or {"postgresql": FakeEngine()}, clock=clock)
    with db.unit_of_work() as uow:
        project = uow.identity.create_project("tenant-a").id
        other = uow.identity.create_project("tenant-b").id
        admin_project = uow.identity.create_project("admin").id
    tokens = {
        "member": issue_token(db, project, ("member",), None)[1].reveal(),
        "other": issue_token(db, other, ("member",), None)[1].reveal(),
        "admin": issue_token(db, admin_project, ("admin",), None)[1].reveal(),
        "tenant_admin": issue_token(db, project, ("admin",), None)[1].reveal(),
    }
    with TestClient(create_app(ctx), raise_server_exceptions=False) as client:
        yield Api(client, ctx, db, db_path, clock, project, other, admin_project, tokens)
    db.dispose()


def create_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"name": "db1", "flavorRef": "1", "volume": {"size": 1}}
    body.update(overrides)
    return {"instance": body}
