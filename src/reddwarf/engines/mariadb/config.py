"""Pure renderers of MariaDB's configuration and install-time SQL, and the layout inside the data dir.

Nothing here does I/O: the same placement, resources and password always give the same text.

Layout inside the placement's `data_dir` (all owned by the instance's OS user, all on its volume)::

    <data_dir>/db/      MariaDB's datadir (each database is a directory in it)
    <data_dir>/files/   secure_file_priv: the only place LOAD DATA / SELECT ... INTO OUTFILE may touch
    <data_dir>/tmp/     tmpdir: on-disk temporary tables and files count against the instance's volume

`files/` and `tmp/` sit beside the datadir, not in it (a directory in the datadir would show up as a
database), and inside the instance (never a shared /tmp: another tenant could read or plant files there).

Memory follows the flavor: the InnoDB buffer pool takes about half the RAM (less on tiny flavors, where
the server's own baseline matters more), max_connections grows slower than RAM, and the redo log is
sized from the volume so that it never takes more than a sixteenth of it.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import dataclass
from pathlib import PurePosixPath

from reddwarf.domain.workload import Placement, Resources

CONF_FILE = "my.cnf"
INSTALL_SQL_FILE = ".install.sql"  # secret init file: removed by the runtime once init has run
FOLLOW_SQL_FILE = "follow.sql"  # a replica's init_file: whom it follows, run at every start (a secret)
TLS_CA, TLS_CERT, TLS_KEY = "tls-ca.pem", "tls-cert.pem", "tls-key.pem"
# The binary log and relay log, named relative to the datadir (their index files then hold relative names, so
# a copy of the volume at another path still finds them).
BINLOG = "binlog"
RELAY_LOG = "relay-bin"
# What a primary keeps of its binary log for a replica that is down or behind: a day (MariaDB 10.11 cannot
# bound it by size); a replica further behind must be seeded again.
BINLOG_KEEP_SECONDS = 86400
SOCKET_FILE = "mysqld.sock"
PID_FILE = "mariadbd.pid"
ERROR_LOG = "error.log"
DATADIR = "db"
FILES_DIR = "files"
TMP_DIR = "tmp"
CHARACTER_SET = "utf8mb4"
COLLATION = "utf8mb4_unicode_ci"
SYSTEM_ACCOUNT = ("mariadb.sys", "localhost")  # locked definer of the sys schema: kept
REPLICATION_USER = "reddwarf_replication"  # replicas log in as it: the set's password and a certificate of its CA

# Paths the runtime gives us never need more than this; anything else could break my.cnf's syntax.
_SAFE_PATH = re.compile(r"^/[A-Za-z0-9/._+-]*$")
_NATIVE_HASH = re.compile(r"^\*[0-9A-F]{40}$")


@dataclass(frozen=True, slots=True)
class Layout:
    """Where MariaDB keeps its files for one placement."""

    datadir: str
    files_dir: str
    tmp_dir: str
    socket: str
    pid_file: str
    error_log: str
    config_file: str
    install_sql: str
    follow_sql: str
    tls_ca: str
    tls_cert: str
    tls_key: str


def layout(placement: Placement) -> Layout:
    data = PurePosixPath(placement.data_dir)
    config_dir = PurePosixPath(placement.config_dir)
    found = Layout(
        datadir=str(data / DATADIR),
        files_dir=str(data / FILES_DIR),
        tmp_dir=str(data / TMP_DIR),
        socket=str(PurePosixPath(placement.socket_dir) / SOCKET_FILE),
        pid_file=str(PurePosixPath(placement.run_dir) / PID_FILE),
        error_log=str(PurePosixPath(placement.log_dir) / ERROR_LOG),
        config_file=str(config_dir / CONF_FILE),
        install_sql=str(config_dir / INSTALL_SQL_FILE),
        follow_sql=str(config_dir / FOLLOW_SQL_FILE),
        tls_ca=str(config_dir / TLS_CA),
        tls_cert=str(config_dir / TLS_CERT),
        tls_key=str(config_dir / TLS_KEY),
    )
    for path in (found.datadir, found.files_dir, found.tmp_dir, found.socket, found.pid_file, found.error_log,
                 found.follow_sql, found.tls_ca, found.tls_cert, found.tls_key):
        if not _SAFE_PATH.fullmatch(path):
            raise ValueError(f"path {path!r} holds characters my.cnf cannot carry safely")
    return found


# Pages a second InnoDB's background flushing aims at (the default, 200, is for a spinning disk).
IO_CAPACITY = 1000


def _clamp(value: int, low: int, high: int) -> int:
    return max(low, min(high, value))


@dataclass(frozen=True, slots=True)
class MemorySettings:
    """Sizes derived from a flavor and volume, in MiB except `max_connections`."""

    buffer_pool_mb: int
    max_connections: int
    log_file_mb: int
    aria_cache_mb: int
    tmp_table_mb: int


def memory_settings(memory_mb: int, volume_gb: int) -> MemorySettings:
    if memory_mb <= 0:
        raise ValueError(f"memory_mb must be positive, got {memory_mb}")
    # Below 1 GiB the server's own baseline (~100 MiB) matters: give the pool less than half.
    buffer_pool = max(32, memory_mb * 3 // 8) if memory_mb < 1024 else memory_mb // 2
    return MemorySettings(
        buffer_pool_mb=buffer_pool,
        max_connections=_clamp(memory_mb // 8, 30, 1000),
        log_file_mb=_clamp(max(1, volume_gb) * 1024 // 16, 32, 2048),
        aria_cache_mb=_clamp(memory_mb // 32, 8, 128),
        tmp_table_mb=_clamp(memory_mb // 32, 16, 64),
    )


# How long a semi-synchronous commit waits for an acknowledgment before MariaDB drops to asynchronous by itself
# (milliseconds): a week. The control plane decides when a set stops waiting ("available"), after recording it;
# MariaDB's own drop would acknowledge commits no replica has while the store still says "synchronous".
SEMI_SYNC_TIMEOUT_MS = 7 * 24 * 3600 * 1000


def server_id(instance_id: str) -> int:
    """A member's `server_id`, from the id of its server (a hash): 1 to 2^32-1. Two members of a set with the
    same one could not replicate, and MariaDB says so loudly (a replica's I/O thread stops on its primary's
    equal id; a primary drops the older of two replicas of one id), at a chance of one in 2^32 per pair."""
    digest = hashlib.sha256(instance_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big") % 0xFFFFFFFF + 1


def render_my_cnf(placement: Placement, resources: Resources, replica: bool = False, semi_sync: bool = False) -> str:
    """The server's only option file, used as `mariadbd --defaults-file=<config_dir>/my.cnf`.

    Replication's settings that need a restart are every instance's (a replica create never restarts its
    source): the binary log with GTIDs in strict mode and a server id of its own, the relay log, TLS files
    (a certificate of the set's CA once it is a member; `FLUSH SSL` loads new ones), and no replication
    thread starting on its own. A `replica` is read-only (its tenant's root lacks READ_ONLY ADMIN) and runs
    `follow.sql` at each start. Every member acknowledges what it receives when its primary asks
    (semi-synchronous replication); a `semi_sync` primary asks, and its commits wait for one replica's
    acknowledgment for as long as it takes (docs/failover.md: only the control plane drops the wait)."""
    paths = layout(placement)
    ipaddress.ip_address(placement.address)  # raises ValueError for anything but an address
    memory = memory_settings(resources.memory_mb, resources.volume_gb)
    settings: list[tuple[str, str]] = [
        # Files: everything inside the instance.
        ("datadir", paths.datadir),
        ("tmpdir", paths.tmp_dir),
        ("secure_file_priv", paths.files_dir),
        ("socket", paths.socket),
        ("pid_file", paths.pid_file),
        ("log_error", paths.error_log),
        # Network: the placement's address only, no DNS (clients of 127.0.x.y arrive from 127.0.0.1).
        ("bind_address", placement.address),
        ("port", str(placement.port)),
        ("skip_name_resolve", "ON"),
        # Every local client arrives from 127.0.0.1: never block that address for failed handshakes.
        ("host_cache_size", "0"),
        ("max_connect_errors", "4294967295"),
        ("max_connections", str(memory.max_connections)),
        # Memory, from the flavor; redo log from the volume.
        ("innodb_buffer_pool_size", f"{memory.buffer_pool_mb}M"),
        ("innodb_log_file_size", f"{memory.log_file_mb}M"),
        ("innodb_file_per_table", "ON"),
        # Flushing: a server at rest writes its dirty pages out and moves its checkpoint up (with the
        # default low-water mark of 0 it never does), at a rate for local SSDs rather than the default's
        # spinning disk. A snapshot's copy recovers from the checkpoint: measured on 1 GB after a load,
        # 216 MB of redo and 13,000 pages took 2.2 s to its first query; once drained (36 s after a
        # million-row update), 0.3 s.
        ("innodb_io_capacity", str(IO_CAPACITY)),
        ("innodb_io_capacity_max", str(IO_CAPACITY * 4)),
        ("innodb_max_dirty_pages_pct_lwm", "1"),
        ("aria_pagecache_buffer_size", f"{memory.aria_cache_mb}M"),
        ("key_buffer_size", "8M"),
        ("tmp_table_size", f"{memory.tmp_table_mb}M"),
        ("max_heap_table_size", f"{memory.tmp_table_mb}M"),
        ("performance_schema", "OFF"),
        # Character set.
        ("character_set_server", CHARACTER_SET),
        ("collation_server", COLLATION),
        # Tenants reach no file outside secure_file_priv and no client file.
        ("local_infile", "OFF"),
        ("symbolic_links", "OFF"),
        # Logs: no statement text is ever logged (DDL carries password hashes).
        ("general_log", "OFF"),
        ("slow_query_log", "OFF"),
        ("log_output", "FILE"),
        ("log_warnings", "2"),
        # Replication (docs/replication.md): a binary log of rows, flushed at each commit, with GTIDs in
        # strict mode; a replica logs what it applies, so that it can be promoted and followed.
        ("server_id", str(server_id(placement.instance_id))),
        ("log_bin", BINLOG),
        ("log_bin_index", BINLOG + ".index"),
        ("relay_log", RELAY_LOG),
        ("relay_log_index", RELAY_LOG + ".index"),
        ("binlog_format", "ROW"),
        ("sync_binlog", "1"),
        ("max_binlog_size", "64M"),
        ("binlog_expire_logs_seconds", str(BINLOG_KEEP_SECONDS)),
        ("gtid_strict_mode", "ON"),
        ("log_slave_updates", "ON"),
        ("skip_slave_start", "ON"),
        ("rpl_semi_sync_slave_enabled", "ON"),
        ("rpl_semi_sync_master_enabled", "ON" if semi_sync else "OFF"),
        ("rpl_semi_sync_master_wait_point", "AFTER_SYNC"),
        ("rpl_semi_sync_master_wait_no_slave", "ON"),
        ("rpl_semi_sync_master_timeout", str(SEMI_SYNC_TIMEOUT_MS)),
        ("ssl_ca", paths.tls_ca),
        ("ssl_cert", paths.tls_cert),
        ("ssl_key", paths.tls_key),
    ]
    if replica:
        # A replica starts as one: after a crash, what it wrote to its binary log as a primary but never had
        # acknowledged (a semi-synchronous commit still waiting: prepared, not committed) is rolled back and cut
        # from its log (MDEV-21117, MDEV-33465), so that a fenced former primary follows its successor instead of
        # having diverged from it.
        settings += [("read_only", "ON"), ("init_file", paths.follow_sql), ("init_rpl_role", "SLAVE")]
    lines = [
        "# Rendered by Reddwarf for instance " + placement.instance_id + "; rewritten on every start.",
        "# Used through --defaults-file: no other option file (e.g. /etc/mysql) is ever read.",
        "[mariadbd]",
        *(f"{name} = {value}" for name, value in settings),
        "",
        "[client]",
        f"socket = {paths.socket}",
    ]
    return "\n".join(lines) + "\n"


def pinned_arguments(placement: Placement) -> tuple[str, ...]:
    """Options no tenant may move, given after `--defaults-file` on mariadbd's command line (they win over
    the file): address, port, unix socket, and the one directory file statements may touch. No secret."""
    paths = layout(placement)
    address = str(ipaddress.ip_address(placement.address))
    for value in (paths.socket, paths.files_dir):
        if not _SAFE_PATH.fullmatch(value):
            raise ValueError(f"unsafe path for mariadbd's command line: {value!r}")
    return (
        f"--bind-address={address}",
        f"--port={placement.port}",
        f"--socket={paths.socket}",
        f"--secure-file-priv={paths.files_dir}",
    )


def admin_hosts(placement: Placement) -> tuple[str, ...]:
    """Hosts of the admin account: TCP from loopback, the unix socket, and the instance's own address."""
    hosts = ["127.0.0.1", "localhost"]
    address = str(ipaddress.ip_address(placement.address))
    if address not in hosts:
        hosts.append(address)
    return tuple(hosts)


def quote_identifier(name: str) -> str:
    """A backtick-quoted identifier (backticks doubled); refuses NUL, which no identifier may hold."""
    if "\0" in name:
        raise ValueError("an identifier cannot contain NUL")
    return "`" + name.replace("`", "``") + "`"


def account(user: str, host: str) -> str:
    return f"{quote_identifier(user)}@{quote_identifier(host)}"


def render_install_sql(admin_user: str, admin_hash: str, hosts: tuple[str, ...]) -> str:
    """SQL for `mariadb-install-db --extra-file`: drop every default account, create the admin.

    It runs once, inside install-db's bootstrap server (no networking, grant tables off until the
    `FLUSH PRIVILEGES` that turns account management on). Whatever accounts install-db made (root and the
    OS user via unix_socket, anonymous ones on older releases) are dropped, so no account can log in
    without a password. The admin's password arrives as its native hash only.
    """
    if not _NATIVE_HASH.fullmatch(admin_hash):
        raise ValueError("the admin password must be given as a mysql_native_password hash")
    system_user, system_host = SYSTEM_ACCOUNT
    lines = [
        "-- Rendered by Reddwarf; run once by mariadb-install-db --extra-file, then removed.",
        "FLUSH PRIVILEGES;",
        "SELECT IFNULL((SELECT CONCAT('DROP USER ', GROUP_CONCAT(CONCAT(QUOTE(User), '@', QUOTE(Host))))"
        " FROM mysql.global_priv"
        f" WHERE NOT (User = '{system_user}' AND Host = '{system_host}')"
        " AND IFNULL(JSON_VALUE(Priv, '$.is_role'), 'false') <> 'true'), 'DO 0') INTO @reddwarf_drop;",
        "EXECUTE IMMEDIATE @reddwarf_drop;",
        "DELETE FROM mysql.proxies_priv;",
        "FLUSH PRIVILEGES;",
    ]
    for host in hosts:
        who = account(admin_user, host)
        lines.append(f"CREATE USER {who} IDENTIFIED BY PASSWORD '{admin_hash}';")
        lines.append(f"GRANT ALL PRIVILEGES ON *.* TO {who} WITH GRANT OPTION;")
    return "\n".join(lines) + "\n"
