#!/usr/bin/env bash
# The test command: set up, lint, type-check, check migrations, run the suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
echo "== ruff"; ruff check compiler orchestrator workers migrations tests benchmarks
echo "== mypy"; mypy
# The suite starts some fifty Python processes (two xdist workers, farm workers, CLI calls); where
# PYTHONDONTWRITEBYTECODE is set (this machine sets it) each one compiles the project's modules
# and pytest rewrites every test file again: ~4 s of CPU per xdist worker at collection alone.
# Bytecode goes to the usual __pycache__ folders (git ignores them).
unset PYTHONDONTWRITEBYTECODE
# One test file per xdist worker at a time (module-scoped model fixtures are built once), files
# handed out longest first (tests/conftest.py, FILE_SECONDS). One worker more than there are
# cores: the farm tests spend much of their time waiting for worker and CLI processes, and a
# third worker fills those gaps (2 cores: 228 s with 3 workers, 262 s with 2; benchmarks/README.md).
workers=$(( $(nproc) + 1 )); [ "$workers" -le 8 ] || workers=8
echo "== pytest ($workers workers)"; python -m pytest -q -p no:cacheprovider -n "$workers" --dist loadfile --no-loadscope-reorder "$@"
# The README's main command, end to end (worker, submit, wait, results, cache hit; ~1-2 min),
# when the whole suite ran: a test selection given as arguments skips it.
if [ $# -eq 0 ]; then
    mkdir -p .data
    echo "== demo (scripts/demo.sh; log .data/demo-last.log)"
    if ! bash scripts/demo.sh > .data/demo-last.log 2>&1; then
        tail -40 .data/demo-last.log; echo "scripts/demo.sh failed" >&2; exit 1
    fi
    tail -1 .data/demo-last.log
fi
