"""Named leases: at most one owner of a name at a time, for as long as it keeps renewing.

`hold` is a compare-and-swap: it takes the name when it is free or expired, renews it when the caller
already owns it, and otherwise changes nothing. It needs no lock and works the same on SQLite and
PostgreSQL; two processes racing for a free name both try the INSERT, and the loser's unique-key failure
is its answer (inside a savepoint, so the caller's transaction goes on).
"""

from __future__ import annotations

from sqlalchemy import bindparam, delete, insert, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from reddwarf.store.clock import now
from reddwarf.store.rows import rowcount, table
from reddwarf.store.tables import LeaseRow

_LEASES = table(LeaseRow)
_TAKE_OR_RENEW = (
    update(_LEASES)
    .where(
        _LEASES.c.name == bindparam("name_"),
        (_LEASES.c.owner == bindparam("owner_")) | (_LEASES.c.expires < bindparam("moment")),
    )
    .values(owner=bindparam("owner_"), expires=bindparam("until"))
)
_INSERT = insert(_LEASES).values(name=bindparam("name_"), owner=bindparam("owner_"), expires=bindparam("until"))
_RELEASE = delete(_LEASES).where(_LEASES.c.name == bindparam("name_"), _LEASES.c.owner == bindparam("owner_"))


class LeaseRepository:
    def __init__(self, session: Session) -> None:
        self._session = session

    def hold(self, name: str, owner: str, ttl: float) -> bool:
        """Take or renew `name` for `owner` until now + `ttl`; False when someone else holds it."""
        moment = now()
        params = {"name_": name, "owner_": owner, "moment": moment, "until": moment + ttl}
        if rowcount(self._session.execute(_TAKE_OR_RENEW, params)) == 1:
            return True
        try:
            with self._session.begin_nested():
                self._session.execute(_INSERT, params)
        except IntegrityError:
            return False  # held by someone else (or just taken by a racing process)
        return True

    def release(self, name: str, owner: str) -> None:
        """Give `name` up now, if `owner` still holds it (the next process need not wait for the expiry)."""
        self._session.execute(_RELEASE, {"name_": name, "owner_": owner})
