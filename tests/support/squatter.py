"""A squatter: another local user's program listening where a database server should be, asking for passwords.

It runs as an unprivileged OS user (not root, not the instance's user unless a test says so) with the
system Python and the standard library only, binds a TCP (address, port) or a unix socket path (retrying
the bind until it succeeds, so that it can grab a port the moment a server lets go of it), and speaks
just enough of a database protocol to ask a client for its password in clear text:

- `postgresql`: answers SSL/GSS requests with "N", then AuthenticationCleartextPassword;
- `mariadb`: a protocol-10 greeting naming `mysql_clear_password`, then an auth switch to it;
- `mariadb-tls`: the same greeting offering TLS too, and TLS with a certificate and key of its own (the files
  named by `start_squatter`'s `tls`, one pair after the other) when a client asks for it: what a client sends
  inside is recorded in clear;
- `redis`: "+OK" to everything (a client would go on to send AUTH);
- `redis-tls`: the same inside TLS with its own certificate (`tls`'s first pair), from the first byte.

Everything any client sends is recorded; a test asserts that nothing (or no credential) arrived.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from dataclasses import dataclass, field

import pytest

from reddwarf.domain.errors import TemporaryError
from reddwarf.domain.instance import InstanceSpec, UserSpec
from reddwarf.domain.secret import Secret
from reddwarf.domain.workload import Placement
from reddwarf.engines.base import Engine
from tests.support.engine_harness import OsUser

PYTHON = "/usr/bin/python3"

_SCRIPT = r'''
import os, socket, struct, sys, threading, time

protocol, kind, where = sys.argv[1], sys.argv[2], sys.argv[3]
tls_files = sys.argv[5:]
lock = threading.Lock()

def say(line):
    with lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

def record(n, data):
    if data:
        say("data %d %s" % (n, data.hex()))

def recv(conn, n):
    data = conn.recv(65536)
    record(n, data)
    return data

def recv_packet(conn, n):
    data = b""
    while len(data) < 4 or len(data) < 4 + int.from_bytes(data[:3], "little"):
        more = conn.recv(4 if len(data) < 4 else 4 + int.from_bytes(data[:3], "little") - len(data))
        if not more:
            break
        data += more
    record(n, data)
    return data

def mysql_packet(seq, payload):
    return struct.pack("<I", len(payload))[:3] + bytes([seq]) + payload

def serve(conn, n):
    try:
        if protocol == "postgresql":
            while True:
                data = recv(conn, n)
                if not data:
                    return
                if len(data) >= 8 and struct.unpack("!I", data[4:8])[0] in (80877103, 80877104):
                    conn.sendall(b"N")
                    continue
                conn.sendall(b"R" + struct.pack("!II", 8, 3))  # AuthenticationCleartextPassword
                while recv(conn, n):
                    pass
                return
        if protocol in ("mariadb", "mariadb-tls"):
            caps = 0x0008 | 0x0200 | 0x8000 | 0x80000  # CONNECT_WITH_DB, PROTOCOL_41, SECURE_CONN, PLUGIN_AUTH
            if protocol == "mariadb-tls":
                caps |= 0x0800  # CLIENT_SSL
            salt = b"abcdefghijklmnopqrst"
            greeting = (b"\x0a" + b"10.11.99-squatter\x00" + struct.pack("<I", 7) + salt[:8] + b"\x00"
                        + struct.pack("<H", caps & 0xFFFF) + b"\x21" + struct.pack("<H", 2)
                        + struct.pack("<H", caps >> 16) + bytes([21]) + b"\x00" * 10 + salt[8:] + b"\x00"
                        + b"mysql_clear_password\x00")
            conn.sendall(mysql_packet(0, greeting))
            if protocol == "mariadb-tls":  # one packet exactly: a client asking for TLS sends its hello at once
                first = recv_packet(conn, n)
            else:
                first = recv(conn, n)
            if not first:
                return
            seq = 2
            if protocol == "mariadb-tls" and len(first) == 36:  # an SSLRequest: TLS, then the login inside it
                import ssl
                context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                pair = ((n - 1) % (len(tls_files) // 2)) * 2  # each connection the next certificate in turn
                context.load_cert_chain(tls_files[pair], tls_files[pair + 1])
                conn = context.wrap_socket(conn, server_side=True)
                say("tls %d" % n)
                if not recv(conn, n):
                    return
                seq = 3
            conn.sendall(mysql_packet(seq, b"\xfe" + b"mysql_clear_password\x00"))
            while recv(conn, n):
                pass
            return
        if protocol == "redis-tls":  # TLS from the first byte (a replica's link to its primary's TLS port)
            import ssl
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(tls_files[0], tls_files[1])
            conn = context.wrap_socket(conn, server_side=True)
            say("tls %d" % n)
        while recv(conn, n):
            conn.sendall(b"+OK\r\n")
    except OSError:
        pass
    finally:
        conn.close()

if kind == "unix":
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    address = where
else:
    host, port = where.rsplit(":", 1)
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do: TIME_WAIT does not stop it
    address = (host, int(port))
deadline = time.monotonic() + float(sys.argv[4])
while True:
    try:
        server.bind(address)
        break
    except OSError:
        if time.monotonic() > deadline:
            say("failed")
            sys.exit(1)
        time.sleep(0.001)
if kind == "unix":
    os.chmod(where, 0o777)
server.listen(16)
say("listening")
n = 0
while True:
    conn, _ = server.accept()
    n += 1
    say("conn %d" % n)
    threading.Thread(target=serve, args=(conn, n), daemon=True).start()
'''


@dataclass
class Squatter:
    """A running squatter process; `received` is every byte clients sent it, `connections` how many came."""

    process: subprocess.Popen[str]
    connections: int = 0
    tls_handshakes: int = 0  # TLS sessions a client completed with it (it trusted the squatter's certificate)
    chunks: list[bytes] = field(default_factory=list)
    listening: threading.Event = field(default_factory=threading.Event)
    failed: threading.Event = field(default_factory=threading.Event)
    reader: threading.Thread | None = None

    @property
    def received(self) -> bytes:
        return b"".join(self.chunks)

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            word, _, rest = line.strip().partition(" ")
            if word == "listening":
                self.listening.set()
            elif word == "failed":
                self.failed.set()
            elif word == "conn":
                self.connections += 1
            elif word == "tls":
                self.tls_handshakes += 1
            elif word == "data":
                self.chunks.append(bytes.fromhex(rest.split(" ", 1)[1]))

    def wait_listening(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self.listening.wait(0.05):
            if self.failed.is_set() or self.process.poll() is not None:
                raise AssertionError("the squatter could not bind its address")
            if time.monotonic() > deadline:
                raise AssertionError("the squatter did not start listening in time")

    def wait_connections(self, count: int, timeout: float = 10.0) -> None:
        """Wait until the squatter accepted `count` connections (a client may connect and leave before the
        squatter's accept() ran)."""
        deadline = time.monotonic() + timeout
        while self.connections < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"the squatter saw {self.connections} connections, not {count}")
            time.sleep(0.01)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)
        if self.reader is not None:
            self.reader.join(timeout=10)  # every line it printed is counted
        if self.process.stdout is not None:
            self.process.stdout.close()


def start_squatter(
    user: OsUser, protocol: str, *, tcp: tuple[str, int] | None = None, unix: str | None = None,
    bind_for: float = 30.0, tls: tuple[tuple[str, str], ...] = (),
) -> Squatter:
    """Start a squatter as `user` on `tcp` (address, port) or the unix socket path `unix`; it keeps trying to
    bind for `bind_for` seconds (`tls`: (certificate, key) files readable by `user`, for `mariadb-tls`: each
    connection is served the next pair in turn).
    Call `wait_listening` before relying on it, `stop` at the end."""
    if (tcp is None) == (unix is None):
        raise ValueError("give exactly one of tcp and unix")
    kind, where = ("unix", unix) if unix is not None else ("tcp", f"{tcp[0]}:{tcp[1]}")  # type: ignore[index]
    process = subprocess.Popen(
        [PYTHON, "-c", _SCRIPT, protocol, kind, str(where), str(bind_for), *(path for pair in tls for path in pair)],
        user=user.uid, group=user.gid, extra_groups=[], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, text=True, cwd="/", env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
        start_new_session=True,
    )
    squatter = Squatter(process)
    squatter.reader = threading.Thread(target=squatter._read, daemon=True)
    squatter.reader.start()
    return squatter


def owned_dir(path: str, user: OsUser) -> str:
    """A 0700 directory at `path` owned by `user` (where that user may plant a socket)."""
    os.makedirs(path, mode=0o700, exist_ok=True)
    os.chown(path, user.uid, user.gid)
    return path


def credentialed_calls(
    engine: Engine, placement: Placement, admin_password: Secret, spec: InstanceSpec, tenant: UserSpec
) -> None:
    """Everything the control plane does with a credential, against whatever serves `placement`: each must
    fail (the real server is not there) without the credential leaving the control plane."""
    dbname = tenant.databases[0] if tenant.databases else None
    assert not engine.probe(placement, engine.admin_user, admin_password, timeout=1.0)
    assert not engine.probe(placement, tenant.name, tenant.password, timeout=1.0, dbname=dbname)
    with pytest.raises(TemporaryError):
        engine.bootstrap(spec, placement, admin_password)
    with pytest.raises(TemporaryError):
        engine.accounts(placement, admin_password).list_users()


def secrets_in(received: bytes, *secrets: Secret) -> list[str]:
    """Which of `secrets` (as UTF-8, as clients send them) appear in `received`: shown masked."""
    return [f"secret #{i}" for i, secret in enumerate(secrets) if secret.reveal().encode("utf-8") in received]
