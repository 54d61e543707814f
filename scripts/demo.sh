#!/usr/bin/env bash
# The README's main command: the farm end to end on embedded defaults (no servers).
# Starts a worker, submits a sample model for this machine's architecture, waits with progress,
# prints the artifact and its validation results, stops the worker. Non-zero exit on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
# A fresh data directory per run, and nothing else: this is the embedded default.
for var in $(env | grep -o '^ORCHESTRATE_[A-Z_]*' || true); do unset "$var"; done
export ORCHESTRATE_HOME="$PWD/.data/demo-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$ORCHESTRATE_HOME"
orchestrate() { python -m orchestrator.cli "$@"; }

echo "== data directory: $ORCHESTRATE_HOME"
echo "== building a sample model (a CNN trained for a few seconds on sklearn's digits)"
orchestrate sample --kind digits -o "$ORCHESTRATE_HOME/sample.pt2"

arch=$(python -c "from workers.capabilities import detect_arch; print(detect_arch())")
echo "== starting a worker for $arch (log: $ORCHESTRATE_HOME/worker.log)"
# Started as a plain command (not the shell function) so that $! is the worker's own pid.
python -m orchestrator.cli worker --concurrency 1 >"$ORCHESTRATE_HOME/worker.log" 2>&1 &
worker_pid=$!
stop_worker() {
    if kill -0 "$worker_pid" 2>/dev/null; then
        kill -TERM "$worker_pid" 2>/dev/null || true  # warm shutdown: marks the worker offline
        for _ in $(seq 1 30); do kill -0 "$worker_pid" 2>/dev/null || break; sleep 1; done
        kill -KILL "$worker_pid" 2>/dev/null || true
        wait "$worker_pid" 2>/dev/null || true
    fi
}
trap stop_worker EXIT

# Submit only once the worker is registered, so the farm does not warn that nobody serves it.
for _ in $(seq 1 120); do
    if orchestrate workers --json | python -c "import json,sys; sys.exit(0 if any(w.get('status') == 'live' for w in json.load(sys.stdin)) else 1)"; then
        break
    fi
    if ! kill -0 "$worker_pid" 2>/dev/null; then
        echo "the worker exited; its log:" >&2; cat "$ORCHESTRATE_HOME/worker.log" >&2; exit 3
    fi
    sleep 1
done
orchestrate workers

echo "== orchestrate submit sample.pt2 --arch $arch --wait"
orchestrate submit "$ORCHESTRATE_HOME/sample.pt2" --arch "$arch" --name digits-cnn --wait --timeout 600
job=$(orchestrate jobs --limit 1 --json | python -c "import json,sys; print(json.load(sys.stdin)[0]['id'])")
artifact=$(orchestrate status "$job" --json | python -c "import json,sys; print(json.load(sys.stdin)['artifact_id'])")

echo "== the artifact"
orchestrate artifacts show "$artifact"
echo "== its validation results"
orchestrate results "$artifact"
echo "== submitting again: answered from the cache"
orchestrate submit "$ORCHESTRATE_HOME/sample.pt2" --arch "$arch" --name digits-cnn
stop_worker
trap - EXIT
echo "== done: engine $artifact built and validated; worker stopped"
