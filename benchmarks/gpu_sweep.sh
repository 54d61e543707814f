#!/usr/bin/env bash
# Inductor settings against each other on the rows where ours was not the fastest (issue 8):
# each variant is one benchmarks/gpu.py process with an Inductor environment setting, timings
# serialised by --lock; run beside the cuda tests on the GPU machine.
#   bash benchmarks/gpu_sweep.sh OUT_DIR
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:?OUT_DIR}; mkdir -p "$out"
export TORCHINDUCTOR_COMPILE_THREADS=${TORCHINDUCTOR_COMPILE_THREADS:-2}
row() {  # row NAME MODEL PRECISION BATCH CONTENDERS [ENV=VALUE ...]
    local name=$1 model=$2 precision=$3 batch=$4 contenders=$5; shift 5
    env "$@" timeout "${SWEEP_TIMEOUT:-540}" python3 benchmarks/gpu.py --models "$model" --precisions "$precision" \
        --batches "$batch" --contenders "$contenders" --lock /tmp/gpu.lock --out "$out/$name.jsonl" \
        > "$out/$name.log" 2>&1 &
}
row r50-fp32-b8-base resnet50 fp32 8 ours,eager_cuda_graph
row r50-fp32-b8-freeze resnet50 fp32 8 ours TORCHINDUCTOR_FREEZING=1
row r50-fp32-b8-nolayout resnet50 fp32 8 ours TORCHINDUCTOR_LAYOUT_OPTIMIZATION=0
row r50-fp32-b8-autotune resnet50 fp32 8 ours TORCHINDUCTOR_MAX_AUTOTUNE=1
row vit-fp16-b8-base vit_b16 fp16 8 ours,torch_compile
row vit-fp16-b8-freeze vit_b16 fp16 8 ours TORCHINDUCTOR_FREEZING=1
row vit-fp16-b8-autotune vit_b16 fp16 8 ours TORCHINDUCTOR_MAX_AUTOTUNE=1
row vit-fp16-b1-freeze vit_b16 fp16 1 ours,torch_compile TORCHINDUCTOR_FREEZING=1
wait
grep -h "ours/fastest\|ours:" "$out"/*.log
