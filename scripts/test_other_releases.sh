#!/usr/bin/env bash
# The version-sensitive tests (ops, layers, model, cache, conversation, trainer, evalsuite, deprecations, the docs'
# examples) in two more environments than the locked one:
#   .venv-newest   the newest releases pyproject.toml allows (what `pip install` gives a new user today)
#   .venv-oldest   the lock, with the oldest transformers pyproject.toml allows (the GPU machine's release)
# CI runs it after the whole suite has passed in the locked environment (README's test command).
set -euo pipefail
cd "$(dirname "$0")/.."
tests=(tests/ops tests/layers tests/models tests/train tests/evalsuite tests/test_no_deprecation_warnings.py
       tests/test_docs_examples.py)
oldest=$(sed -n 's/^ *"transformers>=\([0-9.]*\).*/\1/p' pyproject.toml)
[ -n "$oldest" ] || { echo "no transformers lower bound found in pyproject.toml" >&2; exit 2; }

report() { "$1/bin/python" -c 'import transformers, torch; print(f"== {transformers.__version__=} {torch.__version__=}")'; }

VENV=.venv-newest TTT_OMNI_DEPS=newest bash scripts/setup.sh
report .venv-newest
.venv-newest/bin/python -m pytest -q "${tests[@]}"

VENV=.venv-oldest TTT_OMNI_TRANSFORMERS="$oldest" bash scripts/setup.sh
report .venv-oldest
.venv-oldest/bin/python -m pytest -q "${tests[@]}"
