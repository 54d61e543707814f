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
# two workers, one test file each at a time: module-scoped model fixtures are built once; files
# go out longest first (tests/conftest.py, FILE_SECONDS), not by test count (xdist's default)
echo "== pytest"; python -m pytest -q -p no:cacheprovider -n 2 --dist loadfile --no-loadscope-reorder "$@"
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
