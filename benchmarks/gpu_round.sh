#!/usr/bin/env bash
# One GPU-machine call: the cuda tests in parallel (pytest-xdist carried as a wheel) beside
# benchmark rows and kernel profiles, every log under OUT (few files: the device tool returns
# a handful). Rows and profiles are given as arguments, "kind:args":
#   bash benchmarks/gpu_round.sh OUT "row:resnet50 fp32 8" "profile:vit_b16 fp16 8" "profile-env:TORCHINDUCTOR_FREEZING=1 vit_b16 fp16 8"
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:?OUT}; shift
limit=${ROUND_TIMEOUT:-540}
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1 TORCHINDUCTOR_COMPILE_THREADS=${TORCHINDUCTOR_COMPILE_THREADS:-2}
for job in "$@"; do
    kind=${job%%:*}; set -- ${job#*:}
    case $kind in
        row) timeout "$limit" python3 benchmarks/gpu.py --models "$1" --precisions "$2" --batches "$3" \
                 --lock /tmp/gpu.lock --out "$out/rows.jsonl" >> "$out/rows.log" 2>&1 & ;;
        profile) timeout "$limit" python3 benchmarks/gpu_profile.py --model "$1" --precision "$2" --batch "$3" \
                 > "$out/profile-$1-$2-b$3.txt" 2>&1 & ;;
        profile-env) env "$1" timeout "$limit" python3 benchmarks/gpu_profile.py --model "$2" --precision "$3" --batch "$4" \
                 > "$out/profile-$2-$3-b$4-${1%%=*}.txt" 2>&1 & ;;
    esac
done
if [ -n "${ROUND_TESTS:-}" ]; then
    timeout "$limit" python3 -m pytest -p no:cacheprovider -o addopts= -rs -q -n "${ROUND_WORKERS:-4}" --durations=25 \
        -m "cuda or gpu" $ROUND_TESTS > "$out/tests.txt" 2>&1
    echo "tests rc $?" >> "$out/tests.txt"
fi
wait
