#!/usr/bin/env bash
# Runs every test: the C++ core through CMake/ctest (no Python involved), then pytest.
# pytest runs last so that its summary is the last line printed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYBIN=${PYBIN:-.venv/bin/python}
cmake -S . -B build/ctest -DHIERSPEC_BUILD_TESTS=ON -DHIERSPEC_BUILD_PYTHON=OFF >/dev/null
cmake --build build/ctest -j 2 >/dev/null
(cd build/ctest && ctest --output-on-failure)
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
exec "$PYBIN" -m pytest -q "$@"
