"""Who is at the other end of a connection: the check every engine makes before it sends a credential.

The control plane (root) talks to an instance's server with a credential only over the instance's own
unix socket (its directory is 0700 and owned by the instance's OS user), and checks the *established*
connection's peer with `SO_PEERCRED` before the first byte of a login: a socket file planted by anyone
else, or a server run by another user, is refused. The tenant endpoint (TCP to the instance's address and
port) is only ever pinged without a credential, and a ping counts only when the listener that accepted
the connection belongs to the instance's OS user: on this host both ends of a loopback connection are
sockets of this kernel, and the server-side socket, the mirror of ours, carries the uid of the process that
made the listener. The kernel is asked for that one socket by its four-tuple over `NETLINK_SOCK_DIAG` (what
`ss` uses; a hash lookup, whatever the number of sockets on the host); `/proc/net/tcp` (or `tcp6`), a table
of every socket that costs more to read the more connections the host has, is the fallback.

Standard library only, so that every engine can share it; engines never import runtimes.
"""

from __future__ import annotations

import ipaddress
import logging
import pwd
import socket
import struct
import sys
import time
from collections.abc import Iterable
from pathlib import Path

from reddwarf.domain.endpoints import CONTROL_MARK

log = logging.getLogger(__name__)

_PEERCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid
PROC_NET_TCP = (Path("/proc/net/tcp"), Path("/proc/net/tcp6"))
# States of /proc/net/tcp whose uid column says nothing about the listener (the kernel prints 0).
_TIME_WAIT = "06"
_LOOKUP_ATTEMPTS = 20  # the server side of a loopback handshake shows up within microseconds
_LOOKUP_PAUSE = 0.002

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class WrongPeer(ConnectionRefusedError):
    """The other end of a connection is not the instance's OS user (or cannot be identified): nothing was
    sent to it. An `OSError`, so that database drivers report it as a failed connection."""

    def __init__(self, message: str, uid: int | None = None) -> None:
        super().__init__(message)
        self.uid = uid


PASSWD = Path("/etc/passwd")


class _Uids:
    """Uids by user name, remembered while /etc/passwd is unchanged (same file, size and time: useradd and
    userdel replace it, and then every answer is forgotten). Thread-safe: the (version, answers) pair is
    replaced as a whole."""

    def __init__(self) -> None:
        self._known: tuple[tuple[int, int, int] | None, dict[str, int]] = (None, {})

    def lookup(self, os_user: str) -> int | None:
        try:
            info = PASSWD.stat()
            version = (info.st_ino, info.st_mtime_ns, info.st_size)
        except OSError:
            version = None
        known_version, answers = self._known
        if version is None or known_version != version:
            answers = {}
        uid = answers.get(os_user)
        if uid is not None:
            return uid
        try:
            uid = pwd.getpwnam(os_user).pw_uid
        except KeyError:
            return None
        if version is not None:
            self._known = (version, {**answers, os_user: uid})
        return uid


_UIDS = _Uids()


def uid_of(os_user: str) -> int:
    """The uid of `os_user`; `WrongPeer` when no such user exists (its instance is gone or not made yet).

    Remembered while /etc/passwd is unchanged (`_Uids`): a look-up parses the whole file, and health pings
    every instance every few seconds."""
    uid = _UIDS.lookup(os_user)
    if uid is None:
        raise WrongPeer(f"no OS user {os_user!r} owns this instance")
    return uid


def peer_uid(sock: socket.socket) -> int:
    """The uid of the process at the other end of a connected unix socket (`SO_PEERCRED`)."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
    _pid, uid, _gid = _PEERCRED.unpack(raw)
    return int(uid)


def require_unix_peer(sock: socket.socket, expected_uid: int) -> None:
    """Raise `WrongPeer` unless the connected unix socket's peer runs as `expected_uid`."""
    uid = peer_uid(sock)
    if uid != expected_uid:
        log.warning("refused a unix socket whose server runs as uid %s (expected uid %s)", uid, expected_uid)
        raise WrongPeer(f"the server on this socket runs as uid {uid}, not the instance's user", uid)


def connect_unix(path: str, expected_uid: int, timeout: float) -> socket.socket:
    """A unix socket connected to `path` whose peer was checked to run as `expected_uid`.

    `OSError` when nothing listens there (the server is not up); `WrongPeer` (an `OSError`) when someone
    else does. The socket carries `timeout` for every later read and write.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(path)
        require_unix_peer(sock, expected_uid)
    except BaseException:
        sock.close()
        raise
    return sock


def _decode_address(text: str) -> tuple[Address, int]:
    """One `address:port` field of /proc/net/tcp{,6}: 32-bit words in host byte order, then the port."""
    host_hex, port_hex = text.split(":")
    raw = b"".join(
        int(host_hex[i:i + 8], 16).to_bytes(4, sys.byteorder) for i in range(0, len(host_hex), 8)
    )
    address = ipaddress.ip_address(raw)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address, int(port_hex, 16)


def _normal(host: str) -> Address:
    address = ipaddress.ip_address(host.split("%", 1)[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


# NETLINK_SOCK_DIAG exact lookup of one TCP socket (linux/inet_diag.h, linux/sock_diag.h).
_NETLINK_SOCK_DIAG = 4
_SOCK_DIAG_BY_FAMILY = 20
_NLM_F_REQUEST = 1
_NLMSG_ERROR = 2
_NLMSG = struct.Struct("=IHHII")  # nlmsghdr: len, type, flags, seq, pid
_DIAG_REQ = struct.Struct("=BBBBI")  # inet_diag_req_v2 head: family, protocol, ext, pad, states
_SOCKID = struct.Struct(">HH16s16s")  # inet_diag_sockid head: sport, dport, src, dst (network order)
_SOCKID_TAIL = struct.Struct("=III")  # if, cookie[2]
_NOCOOKIE = 0xFFFFFFFF
_DIAG_MSG_HEAD = struct.Struct("=BBBB")  # inet_diag_msg: family, state, timer, retrans
_DIAG_MSG_TAIL = struct.Struct("=IIIII")  # expires, rqueue, wqueue, uid, inode (after the 48-byte sockid)
_SOCKID_SIZE = _SOCKID.size + _SOCKID_TAIL.size


def _diag_address(address: Address, family: int) -> bytes:
    if family == socket.AF_INET6 and isinstance(address, ipaddress.IPv4Address):
        address = ipaddress.IPv6Address(b"\0" * 10 + b"\xff\xff" + address.packed)
    return address.packed.ljust(16, b"\0")


def diag_socket_uid(local: tuple[Address, int], remote: tuple[Address, int], family: int) -> int | None:
    """The uid of the TCP socket of `family` whose local end is `local` and remote end `remote`, asked of the
    kernel over NETLINK_SOCK_DIAG; None when it has no such socket. `OSError` when the host refuses the
    query (no sock_diag): the caller falls back to /proc/net/tcp."""
    sockid = _SOCKID.pack(local[1], remote[1], _diag_address(local[0], family), _diag_address(remote[0], family))
    request = (
        _DIAG_REQ.pack(family, socket.IPPROTO_TCP, 0, 0, 0xFFFFFFFF)
        + sockid + _SOCKID_TAIL.pack(0, _NOCOOKIE, _NOCOOKIE)
    )
    message = _NLMSG.pack(_NLMSG.size + len(request), _SOCK_DIAG_BY_FAMILY, _NLM_F_REQUEST, 1, 0) + request
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, _NETLINK_SOCK_DIAG) as nl:
        nl.settimeout(1.0)
        nl.sendto(message, (0, 0))
        reply = nl.recv(8192)
    length, kind, _flags, _seq, _pid = _NLMSG.unpack_from(reply)
    if kind == _NLMSG_ERROR:
        (error,) = struct.unpack_from("=i", reply, _NLMSG.size)
        if error == 0:
            return None
        if -error in (2, 22):  # ENOENT: no such socket; EINVAL: not this family
            return None
        raise OSError(-error, "sock_diag query refused")
    if kind != _SOCK_DIAG_BY_FAMILY or length < _NLMSG.size + _DIAG_MSG_HEAD.size + _SOCKID_SIZE:
        return None
    tail = _DIAG_MSG_TAIL.unpack_from(reply, _NLMSG.size + _DIAG_MSG_HEAD.size + _SOCKID_SIZE)
    return int(tail[3])


def socket_owners(
    local: tuple[Address, int], remote: tuple[Address, int], tables: Iterable[Path] = PROC_NET_TCP
) -> set[int]:
    """The uids of the sockets (TIME_WAIT left out) whose local end is `local` and remote end `remote`."""
    owners: set[int] = set()
    for table in tables:
        try:
            lines = table.read_text().splitlines()[1:]
        except FileNotFoundError:  # no IPv6 on this host
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 8 or fields[3] == _TIME_WAIT:
                continue
            if _decode_address(fields[1]) == local and _decode_address(fields[2]) == remote:
                owners.add(int(fields[7]))
    return owners


def tcp_listener_uid(sock: socket.socket) -> int | None:
    """The uid owning the server side of the established TCP connection `sock` (None: not found on this
    host, or more than one candidate). The server side is the socket whose local end is our remote end
    and whose remote end is our local end; the kernel gives it the uid of the listener it came from."""
    ours_host, ours_port = sock.getsockname()[:2]
    theirs_host, theirs_port = sock.getpeername()[:2]
    local = (_normal(theirs_host), int(theirs_port))
    remote = (_normal(ours_host), int(ours_port))
    for attempt in range(_LOOKUP_ATTEMPTS):
        try:
            uid = diag_socket_uid(local, remote, sock.family)
        except OSError as exc:
            log.debug("sock_diag lookup unavailable (%s); reading /proc/net/tcp", exc)
            owners = socket_owners(local, remote)
        else:
            owners = set() if uid is None else {uid}
        if len(owners) == 1:
            return owners.pop()
        if len(owners) > 1:
            return None
        if attempt + 1 < _LOOKUP_ATTEMPTS:
            time.sleep(_LOOKUP_PAUSE)
    return None


def connect_tcp_owned(address: str, port: int, expected_uid: int, timeout: float) -> socket.socket:
    """A TCP connection to (address, port) whose listener was checked to belong to `expected_uid`.

    Nothing is sent before the check. `OSError` when nothing answers; `WrongPeer` when the listener belongs
    to another uid (logged, with that uid) or cannot be identified.
    """
    sock = control_connection(address, port, timeout)
    try:
        owner = tcp_listener_uid(sock)
        if owner != expected_uid:
            log.warning(
                "listener on %s:%s belongs to uid %s, not the instance's user (uid %s): not sending anything",
                address, port, "unknown" if owner is None else owner, expected_uid,
            )
            raise WrongPeer(f"the listener on {address}:{port} does not belong to the instance's user", owner)
    except BaseException:
        sock.close()
        raise
    return sock


def control_connection(address: str, port: int, timeout: float) -> socket.socket:
    """A TCP connection of the control plane to (address, port) itself: marked `CONTROL_MARK` before it connects,
    so that no endpoint route (docs/failover.md) sends it to whoever serves that address as an endpoint."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, CONTROL_MARK)
        sock.settimeout(timeout)
        sock.connect((address, port))
    except BaseException:
        sock.close()
        raise
    return sock


def read_exactly(sock: socket.socket, size: int) -> bytes:
    """`size` bytes from `sock`, or `ConnectionError` when it closes first."""
    chunks: list[bytes] = []
    left = size
    while left:
        chunk = sock.recv(left)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)
