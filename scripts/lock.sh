#!/usr/bin/env bash
# Regenerates requirements.lock: the newest releases pyproject.toml allows, installed into a fresh venv and frozen.
# Run it, then the tests (bash scripts/setup.sh && .venv/bin/python -m pytest -q), and commit the lock with them.
# torch is left out (setup.sh pins the CPU wheel; GPU machines bring their own build), and so is the project itself.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
VENV="$tmp/venv" TTT_OMNI_DEPS=newest bash scripts/setup.sh
{
    echo "# Exact versions CI tests (scripts/setup.sh installs them). Regenerate: bash scripts/lock.sh"
    echo "# Made $(date -u +%Y-%m-%d) with Python $("$tmp/venv/bin/python" -c 'import platform; print(platform.python_version())') on $(uname -m)."
    "$tmp/venv/bin/python" -m pip freeze --exclude-editable --disable-pip-version-check \
        | grep -v -i -E '^(torch|ttt-omni|ttt_omni)==' | LC_ALL=C sort -f
} > requirements.lock
echo "wrote requirements.lock ($(grep -c '==' requirements.lock) packages)"
