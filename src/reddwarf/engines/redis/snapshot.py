"""Snapshots of a running Redis server (`reddwarf.engines.base.Snapshots`).

Every Reddwarf Redis writes an append-only file (`appendonly yes`, `appendfsync everysec`): a copy of its
volume at any instant holds a consistent prefix of the writes (at most the last second's, not yet synced,
are missing: what Redis itself promises after a crash), and loads it at start (measured: 0.42 s for 200,000
keys). Nothing to hold and nothing to fix: the pid file and socket live outside the volume. The users live
in the ACL file beside redis.conf, not on the volume: it is carried with the snapshot. The admin credential
is made the copy's by `RedisBackups.adopt`, as a restore's.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from reddwarf.domain.secret import Secret
from reddwarf.domain.workload import CommandSpec, Placement
from reddwarf.engines.redis import admin, config


class RedisSnapshots:
    def __init__(self, admin_user: str) -> None:
        self._admin_user = admin_user

    @contextlib.contextmanager
    def quiesced(self, placement: Placement, admin_password: Secret) -> Iterator[None]:
        """The ACL users saved to their file first (the file the snapshot carries), `default` as a copy's
        replay of the append-only file needs it (`config.DEFAULT_USER_RULES`)."""
        with admin.session(admin.target(placement, self._admin_user, admin_password, timeout=10.0)) as client:
            admin.save_acl(client)
        yield

    def fix_ups(self, placement: Placement) -> tuple[CommandSpec, ...]:
        return ()

    def carried(self) -> tuple[str, ...]:
        return (config.ACL_FILE,)
