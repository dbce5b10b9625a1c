"""What the host shows about an instance, engine-agnostically: the server process listening on its
endpoint, its OS user, and anything an instance leaves behind (processes, user, files, mounts, cgroups)."""

from __future__ import annotations

import os
import pwd
import socket
import struct
from pathlib import Path

from tests.support.server import processes_of

LISTEN = "0A"


def _hex_endpoint(address: str, port: int) -> str:
    """/proc/net/tcp's form of an IPv4 endpoint: the address as a little-endian word, then the port."""
    (word,) = struct.unpack("<I", socket.inet_aton(address))
    return f"{word:08X}:{port:04X}"


def _listening_inodes(address: str, port: int) -> set[str]:
    wanted = _hex_endpoint(address, port)
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == wanted and fields[3] == LISTEN:
            inodes.add(fields[9])
    return inodes


def _parent(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


def listener_pid(address: str, port: int) -> int | None:
    """The server process listening on (address, port): of the processes holding the listening socket,
    the one whose parent does not hold it (PostgreSQL's postmaster, mariadbd, redis-server)."""
    inodes = _listening_inodes(address, port)
    if not inodes:
        return None
    targets = {f"socket:[{inode}]" for inode in inodes}
    holders = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            for fd in (entry / "fd").iterdir():
                if os.readlink(fd) in targets:
                    holders.add(int(entry.name))
                    break
        except OSError:  # gone, or not ours to read (pid 1 of a container)
            continue
    roots = []
    for pid in holders:
        try:
            if _parent(pid) not in holders:
                roots.append(pid)
        except FileNotFoundError:
            continue
    return min(roots) if roots else None


def owner(pid: int) -> str:
    return pwd.getpwuid(Path(f"/proc/{pid}").stat().st_uid).pw_name


def leftovers(user: str, instance_id: str, state_dir: Path) -> list[str]:
    """Everything of one instance still on the host: processes, OS user, files, mounts, cgroups."""
    found = [f"process {pid}" for pid in processes_of(user)]
    try:
        pwd.getpwnam(user)
        found.append(f"OS user {user}")
    except KeyError:
        pass
    names = {instance_id.lower(), user}
    key = instance_id.replace("-", "").lower()[:12]
    for path in state_dir.rglob("*"):
        if path.name in names or path.name == key:
            found.append(f"path {path}")
    for line in Path("/proc/mounts").read_text().splitlines():
        if instance_id in line or user in line:
            found.append(f"mount {line.split()[1]}")
    cgroups = Path("/sys/fs/cgroup")
    found += [f"cgroup {p}" for pattern in (f"*/{user}", f"*/*/{user}") for p in cgroups.glob(pattern)]
    return found
