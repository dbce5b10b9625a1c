"""What the engine integration harnesses share: a throwaway OS user, free addresses in a test pool.

Each engine's harness (`tests/integration/engines/<engine>/*_harness.py`) runs a workload the way a runtime
would, minimally; the pieces every engine needs the same way live here.
"""

from __future__ import annotations

import ipaddress
import pwd
import random
import secrets
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass(frozen=True)
class OsUser:
    """An unprivileged OS user created for the tests."""

    name: str
    uid: int
    gid: int


@contextmanager
def throwaway_os_user() -> Iterator[OsUser]:
    """A new unprivileged system user (and its group), removed at the end."""
    name = f"rdtest{secrets.token_hex(4)}"
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin",
         "--user-group", name],
        check=True,
        capture_output=True,
    )
    entry = pwd.getpwnam(name)
    try:
        yield OsUser(name, entry.pw_uid, entry.pw_gid)
    finally:
        subprocess.run(["userdel", name], check=False, capture_output=True)
        subprocess.run(["groupdel", name], check=False, capture_output=True)


def bindable(address: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((address, port))
        except OSError:
            return False
        return True


def free_address(pool: str, port: int, exclude: frozenset[str] = frozenset()) -> str:
    """An address of `pool` where `port` is free (random order: parallel runs rarely collide)."""
    hosts = [str(h) for h in ipaddress.ip_network(pool).hosts() if str(h) not in exclude]
    random.shuffle(hosts)
    for host in hosts:
        if bindable(host, port):
            return host
    raise RuntimeError(f"no bindable address in {pool} for port {port}")
