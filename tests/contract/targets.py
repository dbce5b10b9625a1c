"""The engine versions the conformance suite runs against: what CI must have, plus whatever is installed.

A target is one (engine, version, runtime). `declared` is what the engine declares for the version, as
classification ledger names (`services.classification.declared_names`): capability tests for anything
else are skipped, and the suite checks that the API refuses it.
"""

from __future__ import annotations

from dataclasses import dataclass

from reddwarf import wiring
from reddwarf.domain.catalog import DatastoreVersion
from reddwarf.services.classification import declared_names

# Every engine version CI installs (dev.sh test): a missing one fails the suite when `CI` is set.
REQUIRED: tuple[tuple[str, str], ...] = (
    ("mariadb", "10.11"),
    ("postgresql", "15"),
    ("postgresql", "18"),
    ("redis", "7.0"),
)
RUNTIMES: tuple[str, ...] = ("local",)


@dataclass(frozen=True)
class Target:
    engine: str
    version: str
    runtime: str
    installed: DatastoreVersion | None
    declared: tuple[str, ...]
    default_port: int

    @property
    def id(self) -> str:
        return f"{self.engine}-{self.version}-{self.runtime}"

    def declares(self, capability: str) -> bool:
        return capability in self.declared


def discover() -> list[Target]:
    """REQUIRED plus every installed version, for every runtime, in a stable order."""
    engines = wiring.engines()
    installed = {(name, v.name): v for name, engine in engines.items() for v in engine.versions()}
    targets = []
    for runtime in RUNTIMES:
        for engine_name, version_name in sorted(set(REQUIRED) | set(installed)):
            engine = engines.get(engine_name)
            version = installed.get((engine_name, version_name))
            declared = tuple(declared_names(engine.capabilities(version))) if engine and version else ()
            targets.append(Target(engine_name, version_name, runtime, version, declared,
                                  engine.default_port if engine else 0))
    return targets
