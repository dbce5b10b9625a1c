"""Pure renderers of Redis's configuration: redis.conf, the initial ACL file and the ACL rules of each user.

Nothing here does I/O: the same placement, resources and settings always give the same text.

- redis.conf binds the placement's address only, keeps a private unix socket (0700), writes its pidfile,
  log and data where the placement says, caps the dataset at a share of the flavor's RAM with
  `noeviction` (a database never drops data silently: writes fail with an OOM error instead), and keeps
  both persistence mechanisms on: RDB snapshots (`save` rules) and the append-only file (`everysec`).
- Accounts are ACL users kept in an `aclfile` next to redis.conf, so that users made at run time
  (`ACL SETUSER` + `ACL SAVE`) survive a restart. The `default` user is off; passwords appear only as
  SHA-256 hashes (`#<hex>` rules), the form Redis itself stores, never in plain text.
"""

from __future__ import annotations

import hashlib
from pathlib import PurePosixPath

from reddwarf.domain.workload import Placement, Resources

CONF_FILE = "redis.conf"
ACL_FILE = "users.acl"
SOCKET_FILE = "redis.sock"
PID_FILE = "redis.pid"
LOG_FILE = "redis.log"
RDB_FILE = "dump.rdb"
AOF_FILE = "appendonly.aof"
AOF_DIR = "appendonlydir"
# A fork child (BGSAVE, AOF rewrite) is the first victim of an out-of-memory kill in the instance's cgroup,
# never the server: values relative to the server's own oom_score_adj (raising one needs no privilege).
OOM_SCORE_ADJ_VALUES = "0 200 800"
DEFAULT_MAXMEMORY_PERCENT = 50

DEFAULT_USER = "default"
# Replicas log in to their primary as it, over the primary's TLS port with a certificate of their set's CA.
REPLICATION_USER = "reddwarf_replication"
REPLICATION_COMMANDS = ("+psync", "+replconf", "+ping")
# The TLS port a primary takes replicas on (its tenants' port stays plain): the placement's port plus this. It
# asks every client for a certificate of the set's CA (`tls-auth-clients yes`): a tenant has none.
TLS_PORT_OFFSET = 1000
TLS_CA, TLS_CERT, TLS_KEY = "tls-ca.pem", "tls-cert.pem", "tls-key.pem"
# What every account may reach: all keys and pub/sub channels.
ALL_KEYS_AND_CHANNELS = ("~*", "&*")
# Tenants get every command but the @dangerous category (CONFIG, DEBUG, SHUTDOWN, ACL, MODULE, REPLICAOF, INFO,
# MIGRATE, FLUSHALL, KEYS, ...): nothing that reconfigures, stops or inspects the server or other users.
TENANT_COMMANDS = ("+@all", "-@dangerous")
ADMIN_COMMANDS = ("+@all",)
# The tenant's root: the managed-service root. Every tenant command, plus the @dangerous ones that act on the
# tenant's own data or only read the server's state. Still refused (docs/root-privileges.md): ACL, CONFIG
# SET / REWRITE, MODULE LOAD / UNLOAD, DEBUG, REPLICAOF / SLAVEOF, FAILOVER, SHUTDOWN, SAVE (blocks the
# server), SYNC / PSYNC / REPLCONF (a replication stream), MIGRATE (a connection to any host), MONITOR (every
# client's commands), CLIENT KILL / PAUSE / UNPAUSE / UNBLOCK (Reddwarf's own connections), RESTORE (a
# crafted payload reaches the server's memory), CLUSTER, PFDEBUG and PFSELFTEST.
ROOT_COMMANDS = (
    *TENANT_COMMANDS,
    *("+flushall", "+flushdb", "+keys", "+swapdb", "+sort", "+sort_ro"),
    *("+info", "+role", "+lastsave", "+bgsave", "+bgrewriteaof", "+slowlog", "+latency"),
    *("+config|get", "+config|resetstat", "+client|list", "+client|no-evict", "+module|list"),
)
# RDB snapshot rules (Redis 7's defaults): after 1 h if 1 key changed, 5 min if 100, 1 min if 10000.
SAVE_RULES = "3600 1 300 100 60 10000"


def password_hash(password: str) -> str:
    """The lowercase hex SHA-256 of the password's UTF-8 bytes: what a `#<hash>` ACL rule takes."""
    return hashlib.sha256(password.encode("utf-8")).hexdigest()


def user_rules(password_sha256: str, commands: tuple[str, ...]) -> tuple[str, ...]:
    """ACL SETUSER rules that make a user exactly this, whatever it was before (`reset` first)."""
    return ("reset", "on", f"#{password_sha256}", *ALL_KEYS_AND_CHANNELS, *commands)


def tenant_rules(password: str) -> tuple[str, ...]:
    return user_rules(password_hash(password), TENANT_COMMANDS)


def root_rules(password_sha256: str, superuser: bool = False) -> tuple[str, ...]:
    """The root user's rules: `ROOT_COMMANDS`, or every command with the operator's `root_superuser`."""
    return user_rules(password_sha256, ADMIN_COMMANDS if superuser else ROOT_COMMANDS)


def pinned_settings(placement: Placement) -> list[tuple[str, str]]:
    """Settings no tenant may move: address, port, unix socket and its mode (the first four), and the Redis 7
    switches that refuse CONFIG SET of protected settings, DEBUG and MODULE to every user."""
    socket = str(PurePosixPath(placement.socket_dir) / SOCKET_FILE)
    return [
        ("bind", placement.address),
        ("port", str(placement.port)),
        ("unixsocket", socket),
        ("unixsocketperm", "700"),
        ("enable-protected-configs", "no"),
        ("enable-debug-command", "no"),
        ("enable-module-command", "no"),
    ]


def pinned_arguments(placement: Placement) -> tuple[str, ...]:
    """`pinned_settings` as options given after the configuration file on redis-server's command line, where
    they win over the file (and over anything CONFIG REWRITE could write into it); no value holds a secret."""
    arguments: list[str] = []
    for name, value in pinned_settings(placement):
        if not value or any(ch.isspace() or ch in "\\\"'" for ch in value):
            raise ValueError(f"{value!r} cannot be given on redis-server's command line")
        arguments.extend((f"--{name}", value))
    return tuple(arguments)


def admin_rules(password: str) -> tuple[str, ...]:
    return user_rules(password_hash(password), ADMIN_COMMANDS)


# The `default` user: off (nobody can log in as it: no password, and a connection is never given it), yet
# with every right. Redis 7.0 replays a MULTI/EXEC from the append-only file as `default` and checks its ACL
# rights at EXEC: with none, every transaction (and every script's writes, which the AOF wraps in one) was
# refused on load and lost at the next restart, the restart's log full of NOPERM. A user that is off cannot
# be used by a client, so its rights are reachable only by the server's own replay.
DEFAULT_USER_RULES = ("off", "resetpass", "~*", "&*", "+@all")


def render_aclfile(admin_user: str, admin_password: str) -> str:
    """The initial ACL file: `default` off with no password (`DEFAULT_USER_RULES`), the admin with every
    right.

    Redis recreates a `default` user that is on with no password when the file does not name one, so the
    file always does. Only the admin password's hash is written.
    """
    _check_acl_name(admin_user)
    lines = [
        " ".join(("user", DEFAULT_USER, *DEFAULT_USER_RULES)),
        " ".join(("user", admin_user, *admin_rules(admin_password))),
    ]
    return "\n".join(lines) + "\n"


def _check_acl_name(name: str) -> None:
    if not name or any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in name):
        raise ValueError("an ACL user name must be non-empty and hold no whitespace or control characters")


def maxmemory_bytes(memory_mb: int, percent: int) -> int:
    """`maxmemory` for a flavor: `percent` of its RAM, at least 16 MiB."""
    if memory_mb <= 0:
        raise ValueError(f"memory_mb must be positive, got {memory_mb}")
    if not 0 < percent <= 100:
        raise ValueError(f"percent must be in (0, 100], got {percent}")
    return max(16 * 1024 * 1024, memory_mb * 1024 * 1024 * percent // 100)


def quote(value: str) -> str:
    """Quote a redis.conf string argument (backslashes and double quotes escaped; no line break or NUL)."""
    if any(ch in value for ch in "\n\r\0"):
        raise ValueError("configuration values cannot contain line breaks or NUL")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def replication_rules(password: str) -> tuple[str, ...]:
    """The replication user: its password's hash and the three commands a replica sends, no key, no channel."""
    return ("reset", "on", f"#{password_hash(password)}", *REPLICATION_COMMANDS)


def tls_port(placement: Placement) -> int:
    return placement.port + TLS_PORT_OFFSET


def render_redis_conf(
    placement: Placement, resources: Resources, maxmemory_percent: int = DEFAULT_MAXMEMORY_PERCENT,
    upstream: tuple[Placement, str] | None = None,
) -> str:
    """The server's only configuration file, passed as `redis-server <config_dir>/redis.conf`. `upstream`: the
    primary a replica follows and the set's replication password (then the file is a secret)."""
    config_dir = PurePosixPath(placement.config_dir)
    pinned = pinned_settings(placement)
    settings: list[tuple[str, str]] = [
        # Foreground under the runtime's supervision.
        ("daemonize", "no"),
        ("supervised", "no"),
        ("pidfile", quote(str(PurePosixPath(placement.run_dir) / PID_FILE))),
        # Connections: the placement's address only, and a private socket. The same values (and the enable-*
        # switches below) are pinned on the command line (`pinned_arguments`): change them in `pinned_settings`.
        *((name, value if value.isdigit() or value == "no" else quote(value)) for name, value in pinned[:4]),
        ("protected-mode", "yes"),
        ("tcp-keepalive", "300"),
        ("timeout", "0"),
        # Accounts: ACL users in a file of their own (ACL SAVE writes it); nothing else grants access.
        ("aclfile", quote(str(config_dir / ACL_FILE))),
        ("acl-pubsub-default", "resetchannels"),
        *pinned[4:],
        # Memory, from the flavor; a database answers OOM errors rather than evicting keys. The rest of the
        # flavor's memory is the fork's: a BGSAVE child shares the dataset's pages until the server writes
        # them, so a save under heavy writes can double resident memory. Should the cgroup run out anyway,
        # the child is killed (the save fails, the backup says so), not the server.
        ("maxmemory", str(maxmemory_bytes(resources.memory_mb, maxmemory_percent))),
        ("maxmemory-policy", "noeviction"),
        ("oom-score-adj", "relative"),
        ("oom-score-adj-values", quote(OOM_SCORE_ADJ_VALUES)),
        # Persistence: RDB snapshots and the append-only file, both in the data directory.
        ("dir", quote(placement.data_dir)),
        ("dbfilename", quote(RDB_FILE)),
        ("save", SAVE_RULES),
        ("stop-writes-on-bgsave-error", "yes"),
        ("rdbcompression", "yes"),
        ("rdbchecksum", "yes"),
        ("appendonly", "yes"),
        ("appendfilename", quote(AOF_FILE)),
        ("appenddirname", quote(AOF_DIR)),
        ("appendfsync", "everysec"),
        ("aof-use-rdb-preamble", "yes"),
        ("auto-aof-rewrite-percentage", "100"),
        ("auto-aof-rewrite-min-size", "64mb"),
        # Logging to a file in the log dir; no secrets reach it (only hashes ever cross the wire to ACL).
        ("logfile", quote(str(PurePosixPath(placement.log_dir) / LOG_FILE))),
        ("loglevel", "notice"),
        ("syslog-enabled", "no"),
        ("always-show-logo", "no"),
        # Replication (docs/replication.md "Redis"): a TLS port for replicas alone (a certificate of the set's
        # CA asked of every client), whose certificate is also this server's when it is a replica; a full
        # sync starts at once (the default waits 5 s per replica, measured).
        ("tls-port", str(tls_port(placement))),
        ("tls-cert-file", quote(str(config_dir / TLS_CERT))),
        ("tls-key-file", quote(str(config_dir / TLS_KEY))),
        ("tls-ca-cert-file", quote(str(config_dir / TLS_CA))),
        ("tls-auth-clients", "yes"),
        ("tls-replication", "yes"),
        ("repl-diskless-sync", "yes"),
        ("repl-diskless-sync-delay", "0"),
        ("replica-read-only", "yes"),
    ]
    if upstream is not None:
        primary, password = upstream
        settings += [
            ("replicaof", f"{primary.address} {tls_port(primary)}"),
            ("masteruser", REPLICATION_USER),
            ("masterauth", quote(password)),
        ]
    lines = [
        "# Rendered by Reddwarf for instance " + placement.instance_id + "; rewritten on every start.",
        *(f"{name} {value}" for name, value in settings),
    ]
    return "\n".join(lines) + "\n"
