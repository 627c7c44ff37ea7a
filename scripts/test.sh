#!/usr/bin/env bash
# Runs every check: ruff (lint + format, configured in pyproject.toml), the C++ core through
# CMake/ctest (no Python involved; again under ASan + UBSan when the compiler supports it), then
# pytest (with the docstring examples).
# pytest runs last so that its summary is the last line printed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYBIN=${PYBIN:-.venv/bin/python}
"$PYBIN" -m ruff check --quiet .
"$PYBIN" -m ruff format --check --quiet .
cmake -S . -B build/ctest -DHIERSPEC_BUILD_TESTS=ON -DHIERSPEC_BUILD_PYTHON=OFF >/dev/null
cmake --build build/ctest -j 2 >/dev/null
(cd build/ctest && ctest --output-on-failure)
# The same C++ tests under AddressSanitizer + UndefinedBehaviorSanitizer (any finding fails), in
# their own build folder, when the compiler can build and run a sanitized program.
sanitizer_flags="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all"
probe=$(mktemp -d)
echo 'int main() { return 0; }' >"$probe/probe.cpp"
if ${CXX:-c++} $sanitizer_flags "$probe/probe.cpp" -o "$probe/probe" 2>/dev/null && "$probe/probe"; then
  cmake -S . -B build/asan -DHIERSPEC_BUILD_TESTS=ON -DHIERSPEC_BUILD_PYTHON=OFF \
    -DHIERSPEC_INSTALL_CPP=OFF -DCMAKE_BUILD_TYPE=Debug \
    "-DCMAKE_CXX_FLAGS=-O1 $sanitizer_flags" \
    "-DCMAKE_EXE_LINKER_FLAGS=-fsanitize=address,undefined" >/dev/null
  cmake --build build/asan -j 2 >/dev/null
  (cd build/asan && ctest --output-on-failure)
else
  echo "test.sh: the compiler cannot build with $sanitizer_flags; sanitizer build skipped"
fi
rm -rf "$probe"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
exec "$PYBIN" -m pytest -q "$@"
