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
# two workers, one test file each at a time: module-scoped model fixtures are built once
echo "== pytest"; python -m pytest -q -p no:cacheprovider -n 2 --dist loadfile "$@"
