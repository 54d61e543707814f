#!/usr/bin/env bash
# The fault tests (marker `faults`): each owns its redis-server / PostgreSQL on free loopback
# ports and real worker processes; the machine's shared 5432/6379 are never touched.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
python -m pytest -q -p no:cacheprovider -m faults tests/workers/test_fault_servers.py "$@"
