"""The Redis engine: what a Redis instance needs, never where it runs.

`engine.py` holds `RedisEngine` (the `reddwarf.engines.base.Engine` implementation), `settings.py` its
settings (`REDDWARF_REDIS_*`), `config.py` the pure renderers of redis.conf, the initial ACL file and the ACL
rules, `validation.py` the spec rules, `admin.py` the commands of probe and bootstrap, `accounts.py` the live
ACL users and root (`RedisAccounts`; redis-py lives in these and `backup.py`), `backup.py` the snapshot
backups and restores (`RedisBackups`) and `discovery.py` the installed-version scan. Only `reddwarf.wiring`
and test fixtures import this package.
"""

from reddwarf.engines.redis.engine import RedisEngine
from reddwarf.engines.redis.settings import RedisSettings

__all__ = ["RedisEngine", "RedisSettings"]
