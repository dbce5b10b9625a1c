"""A PostgreSQL source instance for the chaos tests that work on a running instance (a branch, a replica): made
by a worker of its own (the tests' workers are the ones that crash), with a tenant and 1000 rows in `app.t`,
and deleted at the end."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import httpx
import psycopg

from tests.support.server import ReddwarfProcesses, wait_for


def active(client: httpx.Client, instance_id: str) -> dict[str, object] | None:
    view = client.get(f"/instances/{instance_id}").json()["instance"]
    return dict(view) if view["status"] == "ACTIVE" else None


def tenant(view: dict[str, object], user: str, password: str,
           direct: ReddwarfProcesses | None = None) -> psycopg.Connection[tuple[object, ...]]:
    """A tenant's connection to the instance of `view` at its address, or (`direct`: its plane) at its own unix
    socket: once its set has switched over, the founder's address is the writer endpoint and reaches the primary."""
    addresses = view["addresses"]
    assert isinstance(addresses, list)
    host = addresses[0]["address"] if direct is None else str(direct.socket_dir(str(view["id"])))
    return psycopg.connect(host=host, port=int(str(view["port"])), user=user, password=password,
                           dbname="app", connect_timeout=5, autocommit=True)


@contextlib.contextmanager
def postgres_source(plane: ReddwarfProcesses, name: str, user: str, password: str) -> Iterator[dict[str, object]]:
    with plane.client() as client:
        response = client.post("/instances", json={"instance": {
            "name": name, "flavorRef": "1", "volume": {"size": 1}, "databases": [{"name": "app"}],
            "datastore": {"type": "postgresql", "version": "15"},
            "users": [{"name": user, "password": password, "databases": [{"name": "app"}]}]}})
        assert response.status_code == 200, response.text
        instance_id = str(response.json()["instance"]["id"])
        worker = plane.start_worker()
        view = wait_for(lambda: active(client, instance_id), 120, "the source to be ACTIVE")
        with tenant(view, user, password) as conn:
            conn.execute("create table t (id int primary key)")
            conn.execute("insert into t select generate_series(1, 1000)")
        worker.kill()
        worker.wait()
        yield view
        plane.stop_all()
        plane.start_server()
        plane.start_worker()
        client.delete(f"/instances/{instance_id}")
        wait_for(lambda: client.get(f"/instances/{instance_id}").status_code == 404, 120, "clean-up")
        plane.stop_all()
        plane.start_server()
