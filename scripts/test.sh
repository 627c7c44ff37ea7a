#!/usr/bin/env bash
# Runs every check: ruff (lint + format, configured in pyproject.toml), the C++ core through
# CMake/ctest (no Python involved), then pytest (with the docstring examples).
# pytest runs last so that its summary is the last line printed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYBIN=${PYBIN:-.venv/bin/python}
"$PYBIN" -m ruff check --quiet .
"$PYBIN" -m ruff format --check --quiet .
cmake -S . -B build/ctest -DHIERSPEC_BUILD_TESTS=ON -DHIERSPEC_BUILD_PYTHON=OFF >/dev/null
cmake --build build/ctest -j 2 >/dev/null
(cd build/ctest && ctest --output-on-failure)
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
exec "$PYBIN" -m pytest -q "$@"
