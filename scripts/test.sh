#!/usr/bin/env bash
# The test command: set up, lint, type-check, check migrations, run the suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
echo "== ruff"; ruff check compiler orchestrator workers migrations tests benchmarks
echo "== mypy"; mypy
# two workers, one test file each at a time: module-scoped model fixtures are built once
echo "== pytest"; python -m pytest -q -p no:cacheprovider -n 2 --dist loadfile "$@"
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
