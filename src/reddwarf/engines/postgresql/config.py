"""Pure renderers of PostgreSQL's configuration: postgresql.conf, pg_hba.conf and pg_ident.conf.

Nothing here does I/O: the same placement, resources and settings always give the same text. Memory
settings follow the flavor (shared_buffers ~25% of RAM, effective_cache_size ~75%, work_mem and
maintenance_work_mem scaled, max_connections sized so that they fit); WAL limits follow the volume so that
WAL alone can never fill it. Authentication is always scram-sha-256: there is no `trust` line, ever.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

from reddwarf.domain.workload import Placement, Resources
from reddwarf.engines.postgresql import wal
from reddwarf.engines.postgresql.admin import REPLICATOR

# The database a former primary's pg_rewind connects to on its new primary.
REWIND_DATABASE = "postgres"

CONF_FILE = "postgresql.conf"
HBA_FILE = "pg_hba.conf"
IDENT_FILE = "pg_ident.conf"
IDENT_MAP = "reddwarf_members"

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _clamp(value: int, low: int, high: int) -> int:
    return max(low, min(high, value))


@dataclass(frozen=True, slots=True)
class MemorySettings:
    """Sizes derived from a flavor; memory in MiB except `work_mem_kb`."""

    shared_buffers_mb: int
    effective_cache_size_mb: int
    work_mem_kb: int
    maintenance_work_mem_mb: int
    max_connections: int


def memory_settings(memory_mb: int) -> MemorySettings:
    """Size PostgreSQL's memory for `memory_mb` of RAM.

    max_connections grows slower than RAM (each backend costs a few MiB before any work_mem); work_mem is
    what is left beside shared_buffers, shared by every connection running a few sorts at once.
    """
    if memory_mb <= 0:
        raise ValueError(f"memory_mb must be positive, got {memory_mb}")
    shared_buffers = max(16, memory_mb // 4)
    max_connections = _clamp(memory_mb // 16 + 20, 25, 400)
    left_kb = max(0, memory_mb - shared_buffers) * 1024
    work_mem_kb = _clamp(left_kb // (max_connections * 3), 1024, 256 * 1024)
    return MemorySettings(
        shared_buffers_mb=shared_buffers,
        effective_cache_size_mb=max(32, memory_mb * 3 // 4),
        work_mem_kb=work_mem_kb,
        maintenance_work_mem_mb=_clamp(memory_mb // 16, 16, 2048),
        max_connections=max_connections,
    )


def wal_settings(volume_gb: int) -> tuple[int, int]:
    """(min_wal_size, max_wal_size) in MiB: at most a tenth of the volume, within PostgreSQL's bounds."""
    max_wal = _clamp(volume_gb * 1024 // 10, 96, 4096)
    return _clamp(max_wal // 4, 32, 1024), max_wal


def quote(value: str) -> str:
    """Quote a postgresql.conf string value (single quotes doubled; no newline may appear)."""
    if "\n" in value or "\r" in value or "\0" in value:
        raise ValueError("configuration values cannot contain line breaks or NUL")
    return "'" + value.replace("'", "''") + "'"


def pinned_settings(placement: Placement) -> list[tuple[str, str]]:
    """Settings no tenant may move: the address, port, socket directory, client authentication files and
    the WAL archive.

    They are given on the server's command line (`pinned_arguments`), which takes precedence over both
    postgresql.conf and postgresql.auto.conf (`ALTER SYSTEM`), as well as in postgresql.conf for readers.
    """
    config_dir = PurePosixPath(placement.config_dir)
    return [
        ("listen_addresses", placement.address),
        ("port", str(placement.port)),
        ("unix_socket_directories", placement.socket_dir),
        # The socket directory is the gate (0700; 0710 to the members of the instance's replication set, who
        # replicate over it), so the socket itself is open to whoever passes it.
        ("unix_socket_permissions", "0777"),
        ("hba_file", str(config_dir / HBA_FILE)),
        ("ident_file", str(config_dir / IDENT_FILE)),
        # WAL archiving into the instance's own directory, shipped by the control plane (`wal`): pinned,
        # so that no tenant setting stops it or runs another command.
        ("wal_level", "replica"),
        ("archive_mode", "on"),
        ("archive_command", wal.archive_command(placement)),
        # PostgreSQL 15 and later: a library would take precedence over the command.
        ("archive_library", ""),
    ]


def pinned_arguments(placement: Placement) -> tuple[str, ...]:
    """`-c name=value` pairs of `pinned_settings` for the server's argv (values hold no secret)."""
    arguments: list[str] = []
    for name, value in pinned_settings(placement):
        quote(value)  # refuses line breaks and NUL
        arguments.extend(("-c", f"{name}={value}"))
    return tuple(arguments)


def slot_keep_mb(volume_gb: int) -> int:
    """`max_slot_wal_keep_size`: the WAL a replica that stopped streaming may pin on its primary's volume (a
    fifth of it, at least 256 MB); beyond it the slot is lost and the replica must be seeded again."""
    return max(256, volume_gb * 1024 // 5)


def render_postgresql_conf(
    placement: Placement, resources: Resources, *, summarize_wal: bool = False,
    upstream: tuple[str, str] | None = None, synchronous: tuple[str, ...] = (),
) -> str:
    """The server's only configuration file, passed as `-c config_file=<config_dir>/postgresql.conf`.

    `summarize_wal` (PostgreSQL 17 and later only: older servers refuse to start with an unknown setting)
    keeps summaries of the blocks each stretch of WAL changed, which incremental backups are made of.
    `upstream`: (conninfo, slot) of the primary a replica follows (`replication.conninfo`). `synchronous`: the
    slots (each replica's application_name) one of which a commit waits for (docs/failover.md)."""
    memory = memory_settings(resources.memory_mb)
    min_wal, max_wal = wal_settings(resources.volume_gb)
    vcpus = max(1, resources.vcpus)
    settings: list[tuple[str, str]] = [
        ("data_directory", quote(placement.data_dir)),
        # Connections: the placement's address only, a private socket directory, Reddwarf's hba file. The
        # same values are pinned on the command line (`pinned_arguments`): change them in `pinned_settings`.
        *((name, value if value.isdigit() else quote(value)) for name, value in pinned_settings(placement)),
        ("max_connections", str(memory.max_connections)),
        ("superuser_reserved_connections", "3"),
        ("password_encryption", quote("scram-sha-256")),
        # Memory, from the flavor.
        ("shared_buffers", f"{memory.shared_buffers_mb}MB"),
        ("effective_cache_size", f"{memory.effective_cache_size_mb}MB"),
        ("work_mem", f"{memory.work_mem_kb}kB"),
        ("maintenance_work_mem", f"{memory.maintenance_work_mem_mb}MB"),
        # CPUs, from the flavor.
        ("max_worker_processes", str(max(8, vcpus + 4))),
        ("max_parallel_workers", str(vcpus)),
        ("max_parallel_workers_per_gather", str(vcpus // 2)),
        ("max_parallel_maintenance_workers", str(max(1, vcpus // 2))),
        # WAL, from the volume: WAL alone never fills it, nor what a dead replica's slot keeps.
        ("min_wal_size", f"{min_wal}MB"),
        ("max_wal_size", f"{max_wal}MB"),
        ("max_slot_wal_keep_size", f"{slot_keep_mb(resources.volume_gb)}MB"),
        # Every member keeps its last max_wal_size of WAL whatever its slots say: a former primary rewound after a
        # failover replays from its last checkpoint before the two diverged, which the new primary (a replica
        # until then, with no slot for it) must still hold when the rejoin starts it.
        ("wal_keep_size", f"{max_wal}MB"),
        # Logging to stderr (the runtime keeps it in the log dir). No statement text ever reaches the log:
        # DDL can carry passwords, and a failing statement would otherwise be logged with its text.
        ("logging_collector", "off"),
        ("log_destination", quote("stderr")),
        ("log_line_prefix", quote("%m [%p] %q%u@%d ")),
        ("log_statement", quote("none")),
        ("log_min_error_statement", "panic"),
        ("log_min_duration_statement", "-1"),
        ("log_timezone", quote("UTC")),
        # Locale and formats (initdb's own postgresql.conf is not used).
        ("timezone", quote("UTC")),
        ("datestyle", quote("iso, mdy")),
        ("lc_messages", quote("C")),
        ("lc_monetary", quote("C")),
        ("lc_numeric", quote("C")),
        ("lc_time", quote("C")),
        ("default_text_search_config", quote("pg_catalog.english")),
    ]
    if summarize_wal:
        settings.append(("summarize_wal", "on"))
    # A commit waits for any one of the set's replicas to have flushed it (quorum: whichever is first), or
    # for none. A reload changes it, and commits waiting on a list emptied this way are released.
    settings.append(("synchronous_standby_names", quote(sync_names(synchronous))))
    if upstream is not None:
        conninfo, slot = upstream
        settings.extend((("primary_conninfo", quote(conninfo)), ("primary_slot_name", quote(slot)),
                         ("hot_standby", "on")))
    lines = [
        "# Rendered by Reddwarf for instance " + placement.instance_id + "; rewritten on every start.",
        *(f"{name} = {value}" for name, value in settings),
    ]
    return "\n".join(lines) + "\n"


def sync_names(slots: tuple[str, ...]) -> str:
    """`synchronous_standby_names` for `slots` (slot names: lowercase letters, digits and underscores)."""
    for slot in slots:
        if not slot or not all(ch.isascii() and (ch.isalnum() or ch == "_") for ch in slot):
            raise ValueError(f"{slot!r} is not a slot name")
    return "" if not slots else "ANY 1 (" + ", ".join(f'"{slot}"' for slot in slots) + ")"


def _host_network(address: str) -> Network:
    return ipaddress.ip_network(address)  # a bare address: /32 or /128


def render_pg_hba(placement: Placement, admin_user: str, allowed_networks: Sequence[Network] = ()) -> str:
    """Client authentication: scram-sha-256 everywhere; the admin account only from this host.

    Clients that reach a 127.0.x.y address arrive from 127.0.0.1, hence the loopback line.
    """
    own = _host_network(placement.address)
    loopback = ipaddress.ip_network("127.0.0.1/32")
    local_nets: list[Network] = [loopback]
    if own != loopback:
        local_nets.append(own)
    rows: list[tuple[str, ...]] = [
        # Members of the instance's replication set, by the OS user of their server (no password exists).
        ("local", "replication", REPLICATOR, "", f"peer map={IDENT_MAP}"),
        # ... and a former primary's pg_rewind, which reads files of this one's data directory (only that).
        ("local", REWIND_DATABASE, REPLICATOR, "", f"peer map={IDENT_MAP}"),
        ("local", "all", "all", "", "scram-sha-256"),
        *(("host", "all", "all", str(net), "scram-sha-256") for net in local_nets),
        ("local", "replication", "all", "", "scram-sha-256"),
        *(("host", "replication", "all", str(net), "scram-sha-256") for net in local_nets),
    ]
    if allowed_networks:
        # The per-instance admin account never logs in from another host.
        rows.append(("host", "all", _hba_name(admin_user), "all", "reject"))
        rows.extend(("host", "all", "all", str(net), "scram-sha-256") for net in allowed_networks)
    header = "# Rendered by Reddwarf; first match wins. TYPE DATABASE USER ADDRESS METHOD"
    body = ["  ".join(field for field in row if field) for row in rows]
    return "\n".join([header, *body]) + "\n"


def _hba_name(name: str) -> str:
    if any(ch in name for ch in '"\n\r\0'):
        raise ValueError("an admin user name for pg_hba cannot contain quotes or line breaks")
    return f'"{name}"'


def render_pg_ident(peers: Sequence[str] = ()) -> str:
    """The one ident map: the OS users of the other members of the instance's replication set, each admitted
    as the replication role over the unix socket. Every other login is by password."""
    lines = ["# Rendered by Reddwarf: MAPNAME SYSTEM-USERNAME PG-USERNAME"]
    for os_user in peers:
        if not os_user or any(ch.isspace() or ch in "\"#\0" for ch in os_user):
            raise ValueError(f"OS user name {os_user!r} cannot appear in pg_ident.conf")
        lines.append(f"{IDENT_MAP} {os_user} {REPLICATOR}")
    return "\n".join(lines) + "\n"
