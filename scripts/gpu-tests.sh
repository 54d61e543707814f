#!/usr/bin/env bash
# The GPU machine's run (CI has no GPU): the cuda-marked tests, then benchmarks/gpu.py.
# That machine has PyTorch, Triton and a C++ compiler but lacks celery, kombu, sqlalchemy,
# alembic and pydantic: carry them as wheels in .whl/ (see README.md, "GPU engines").
#   bash scripts/gpu-tests.sh [LOG_DIR] [pytest args...]
set -uo pipefail
cd "$(dirname "$0")/.."
log=${1:-.data/gpu}; shift || true
mkdir -p "$log"
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH="/tmp/site:$PWD"
else
    export PYTHONPATH="$PWD"
fi
export PYTHONUNBUFFERED=1
python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name())' | tee "$log/env.txt"
python3 -m pytest -p no:cacheprovider -m cuda -o addopts="" -rs "$@" 2>&1 | tee "$log/pytest-cuda.txt"
exit "${PIPESTATUS[0]}"
