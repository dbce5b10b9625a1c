#!/usr/bin/env bash
# Install a real Keystone (PyPI `keystone`, pinned by constraints.txt) into a venv of its own, outside the
# repository, for tests/integration/keystone. Idempotent: a venv whose stamp matches the constraints is kept.
#   tests/integration/keystone/install.sh [VENV_DIR]      (default: $REDDWARF_KEYSTONE_VENV or
#                                                          /var/tmp/reddwarf-keystone/venv)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${1:-${REDDWARF_KEYSTONE_VENV:-/var/tmp/reddwarf-keystone/venv}}"
constraints="$here/constraints.txt"
stamp="$venv/.reddwarf-constraints.sha256"
want="$(sha256sum "$constraints" | cut -d' ' -f1)"

if [ -x "$venv/bin/keystone-manage" ] && [ -x "$venv/bin/gunicorn" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  exit 0
fi
py="${PYTHON:-python3}"
# The stamp is written last: an interrupted install leaves no stamp and is redone from scratch.
rm -rf "$venv"
mkdir -p "$(dirname "$venv")"
"$py" -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q -c "$constraints" "keystone==30.0.0" gunicorn
echo "$want" > "$stamp"
echo "keystone installed in $venv"
