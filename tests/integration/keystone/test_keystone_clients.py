"""Trove's clients reach Reddwarf through Keystone's catalog; an admin deletes another project's instance."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
from keystone_support import Cloud, User
from keystoneauth1 import session
from keystoneauth1.identity import v3
from tests.support.server import ReddwarfProcesses, wait_for
from troveclient import client as trove_client

OPENSTACK = str(Path(sys.executable).with_name("openstack"))


def openstack(cloud: Cloud, user: User, *args: str) -> Any:
    """`openstack database ...` authenticated by OS_* variables (password never on the command line)."""
    env = {**os.environ, **user.env(cloud.keystone.url)}
    result = subprocess.run([OPENSTACK, "database", *args, "-f", "json"], capture_output=True, text=True,
                            env=env, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout) if result.stdout.strip() else None


def active(instance: dict[str, Any]) -> bool:
    """True once ACTIVE; an ERROR fails the test at once with the instance's fault."""
    assert instance["status"] != "ERROR", f"instance went to ERROR: {instance.get('fault')}"
    return bool(instance["status"] == "ACTIVE")


def test_openstack_cli_through_the_catalog(cloud: Cloud, reddwarf: ReddwarfProcesses) -> None:
    name = "ks-" + secrets.token_hex(3)
    created = openstack(cloud, cloud.alice, "instance", "create", name, "--flavor", "1", "--size", "1",
                        "--datastore", "postgresql", "--datastore-version", "15")
    instance_id = created["id"]
    assert name in [i["Name"] for i in openstack(cloud, cloud.alice, "instance", "list")]
    wait_for(lambda: active(openstack(cloud, cloud.alice, "instance", "show", instance_id)), 240,
             "the OpenStack CLI to see ACTIVE", interval=1)

    env = {**os.environ, **cloud.alice.env(cloud.keystone.url)}
    deleted = subprocess.run([OPENSTACK, "database", "instance", "delete", instance_id], capture_output=True,
                             text=True, env=env, timeout=120, check=False)
    assert deleted.returncode == 0, deleted.stderr
    wait_for(lambda: instance_id not in [i["ID"] for i in openstack(cloud, cloud.alice, "instance", "list")], 90,
             "the instance to go away", interval=1)


def test_troveclient_session_and_admin_delete_by_id(cloud: Cloud, reddwarf: ReddwarfProcesses) -> None:
    auth = v3.Password(
        auth_url=cloud.keystone.url, username=cloud.bob.name, password=cloud.bob.password,
        project_name=cloud.bob.project_name, user_domain_name="Default", project_domain_name="Default",
    )
    tc = trove_client.Client("1.0", session=session.Session(auth=auth), region_name="RegionOne")
    name = "ks-" + secrets.token_hex(3)
    created = tc.instances.create(name, flavor_id="1", volume={"size": 1}, datastore="postgresql",
                                  datastore_version="15")
    assert created.status == "BUILD"
    wait_for(lambda: active(tc.instances.get(created.id).to_dict()), 240, "troveclient to see ACTIVE", interval=1)

    # Alice (a member of project A) cannot see it; the cloud admin can act on it by id from its own project.
    alice = httpx.get(f"{reddwarf.url}/v1.0/{cloud.alice.project_id}/instances/{created.id}",
                      headers={"X-Auth-Token": cloud.token(cloud.alice)}, timeout=30)
    assert alice.status_code == 404
    admin_headers = {"X-Auth-Token": cloud.token(cloud.admin)}
    shown = httpx.get(f"{reddwarf.url}/v1.0/{cloud.admin.project_id}/instances/{created.id}",
                      headers=admin_headers, timeout=30)
    assert shown.status_code == 200
    deleted = httpx.delete(f"{reddwarf.url}/v1.0/{cloud.admin.project_id}/instances/{created.id}",
                           headers=admin_headers, timeout=30)
    assert deleted.status_code == 202, deleted.text

    wait_for(lambda: created.id not in [i.id for i in tc.instances.list()], 90, "bob's instance to go away",
             interval=1)
