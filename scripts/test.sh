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
