"""The MariaDB engine: what a MariaDB instance needs, never where it runs.

`engine.py` holds `MariadbEngine` (the `reddwarf.engines.base.Engine` implementation), `settings.py` its
settings (`REDDWARF_MARIADB_*`), `config.py` the pure renderers (my.cnf, the install-time SQL, the layout
inside the instance's data dir), `validation.py` the spec rules, `passwords.py` the client-side password
hashes, `admin.py` the SQL of probe and bootstrap, `accounts.py` the live users, databases, grants and root
(`MariadbAccounts`; PyMySQL lives in these and `backup.py`), `backup.py` the backups and restores with
mariadb-backup (`MariadbBackups`) and `discovery.py` the installed-version scan. Only
`reddwarf.wiring` and test fixtures import this package.
"""

from reddwarf.engines.mariadb.engine import MariadbEngine
from reddwarf.engines.mariadb.settings import MariadbSettings

__all__ = ["MariadbEngine", "MariadbSettings"]
