"""The catalogue a tenant chooses from: datastores and their versions (from the engines) and flavors.

Datastore and version ids are uuid5 values derived from names (`domain.catalog`), so they are the same
on every host and every restart. A datastore or version is found by id or by name. Non-admins see only
active versions and only datastores that have one; admins see everything (as in Trove). With the operator
setting `hide_experimental`, non-admins also do not see experimental versions (`services.classification`):
lists, shows and creates treat them as absent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from reddwarf.domain.catalog import DatastoreVersion, Flavor, datastore_id
from reddwarf.domain.errors import BadRequest, NotFound
from reddwarf.services import classification
from reddwarf.services.context import ServiceContext


@dataclass(frozen=True, slots=True)
class Datastore:
    """One datastore (= one engine) with its installed versions, newest first."""

    name: str
    versions: tuple[DatastoreVersion, ...]

    @property
    def id(self) -> str:
        return datastore_id(self.name)

    @property
    def default_version(self) -> DatastoreVersion | None:
        """The newest active version: what a create without `datastore.version` gets."""
        return next((v for v in self.versions if v.active), None)


def version_sort_key(number: str) -> tuple[tuple[int, str], ...]:
    """Orders "9.6" < "15.2" < "15.10": numeric parts compare as numbers."""
    return tuple((int(part), "") if part.isdigit() else (-1, part) for part in re.split(r"[.\-]", number))


def list_datastores(ctx: ServiceContext, *, include_inactive: bool = False) -> list[Datastore]:
    """Every datastore and version for an admin (`include_inactive`); for a tenant, the active versions
    that `hide_experimental` does not hide, and only datastores that have one."""
    return [d for d in (_datastore(ctx, name, include_inactive) for name in sorted(ctx.engines)) if d is not None]


def _datastore(ctx: ServiceContext, name: str, include_inactive: bool) -> Datastore | None:
    """The datastore of engine `name` as the caller may see it; None when a tenant would see no version."""
    versions = sorted(ctx.engines[name].versions(), key=lambda v: version_sort_key(v.number), reverse=True)
    visible = tuple(v for v in versions if include_inactive or (v.active and not classification.hidden(ctx, v)))
    return Datastore(name=name, versions=visible) if visible or include_inactive else None


def get_datastore(ctx: ServiceContext, ident: str, *, include_inactive: bool = False) -> Datastore:
    """A datastore by id or name, or `NotFound`."""
    if ident in ctx.engines:  # by name (what creates send): only that engine's versions are looked at
        found = _datastore(ctx, ident, include_inactive)
        if found is None:
            raise NotFound("Datastore", ident)
        return found
    for datastore in list_datastores(ctx, include_inactive=include_inactive):
        if ident in (datastore.id, datastore.name):
            return datastore
    raise NotFound("Datastore", ident)


def get_version(
    ctx: ServiceContext, datastore_ident: str, version_ident: str, *, include_inactive: bool = False
) -> DatastoreVersion:
    """A version of a datastore by id or name, or `NotFound`."""
    datastore = get_datastore(ctx, datastore_ident, include_inactive=include_inactive)
    for version in datastore.versions:
        if version_ident in (version.id, version.name):
            return version
    raise NotFound("Datastore version", version_ident)


def get_version_by_id(ctx: ServiceContext, version_id: str, *, include_inactive: bool = False) -> DatastoreVersion:
    for datastore in list_datastores(ctx, include_inactive=include_inactive):
        for version in datastore.versions:
            if version.id == version_id:
                return version
    raise NotFound("Datastore version", version_id)


def version_number(ctx: ServiceContext, datastore: str, version: str) -> str:
    """The full version number of an installed version; its name when it is no longer installed."""
    engine = ctx.engines.get(datastore)
    if engine is not None:
        for candidate in engine.versions():
            if candidate.name == version:
                return candidate.number
    return version


def resolve_version(
    ctx: ServiceContext, datastore: str | None, version: str | None, number: str | None, *, admin: bool = False
) -> DatastoreVersion:
    """The version a create asks for (Trove's rules): the default datastore and its newest version
    when unnamed; `number`, when given, must match the chosen version's full number. Unless `admin`,
    versions hidden by `hide_experimental` are treated as absent."""
    datastore_name = datastore or ctx.settings.default_datastore
    found = get_datastore(ctx, datastore_name, include_inactive=True)
    if not admin and ctx.settings.hide_experimental:
        shown = tuple(v for v in found.versions if not classification.hidden(ctx, v))
        if not shown:
            raise NotFound("Datastore", datastore_name)
        found = Datastore(name=found.name, versions=shown)
    if version is None and number is None:
        chosen = found.default_version
        if chosen is None:
            raise BadRequest(
                f"datastore.version: datastore {found.name} has no active version installed.", field="datastore.version"
            )
        return chosen
    candidates = [
        v
        for v in found.versions
        if (version is None or version in (v.id, v.name)) and (number is None or v.number == number)
    ]
    if not candidates:
        if version is not None:
            raise NotFound("Datastore version", version if number is None else f"{version} ({number})")
        raise NotFound("Datastore version number", str(number))
    chosen = candidates[0]
    if not chosen.active:
        raise BadRequest(
            f"datastore.version: version {chosen.name} of {found.name} is not active.", field="datastore.version"
        )
    return chosen


def list_flavors(ctx: ServiceContext) -> list[Flavor]:
    return list(ctx.flavors.values())


def get_flavor(ctx: ServiceContext, flavor_id: str) -> Flavor:
    """A flavor by id (Trove also accepts the name), or `NotFound` naming it."""
    found = ctx.flavors.get(flavor_id)
    if found is not None:
        return found
    for flavor in ctx.flavors.values():
        if flavor.name == flavor_id:
            return flavor
    raise NotFound("Flavor", flavor_id)
