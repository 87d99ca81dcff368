#!/usr/bin/env bash
# The GPU session in one script (one lent NVIDIA H200, 16 cores, no internet), from the repository root, after
#   python3 -m pip install -q --no-index --no-deps --no-compile .whl/*.whl
#   python3 -m pip install -q --no-index --no-deps --no-build-isolation .
# Steps, each under its own `timeout` (a failed or timed-out step does not stop the others; the whole stays
# under 9 minutes):
#   1. cuda_check: smoke pipeline, train determinism + resume (bf16, fp16), sampling  -> results/benchmarks/cuda_check.json
#   2. the default DAG on the GPU in a scratch copy, several jobs sharing the GPU (gpu_mem_mb), timed
#   3. cuda_check's quality part on that run (bf16 vs fp32 on its val images), appended to cuda_check.json
#   4. with time left: cuda_check's compile part (torch.compile ResShift K=4)        -> results/benchmarks/cuda_check_compile.json
# Everything it writes (JSON, logs, the run's results) is copied under $OUT (the device tool's folder; default
# ./device_out). Dry check on any machine: DEVICE_RUN_DRY=1 bash benchmarks/device_run.sh (prints the commands).
set -u

ROOT=$(pwd)
OUT=${OUT:-$ROOT/device_out}
PYTHON=${PYTHON:-python3}
DRY=${DEVICE_RUN_DRY:-0}
GPU_MEM_MB=${GPU_MEM_MB:-120000}   # about 85 % of an H200's 141 GB; the rules' gpu_mem_mb estimates share it
TOTAL_S=${TOTAL_S:-570}            # the budget of the whole script, seconds (one device call: at most 600)
SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/medsr-device-run.XXXXXX")
STARTED=$(date +%s)
mkdir -p "$OUT" results/benchmarks
PATH="$(dirname "$("$PYTHON" -c 'import sys; print(sys.executable)')"):$PATH"  # medsr and snakemake of this python
export PATH CUBLAS_WORKSPACE_CONFIG=:4096:8

elapsed() { echo $(($(date +%s) - STARTED)); }

# step NAME SECONDS COMMAND...: run under timeout, log to $OUT/NAME.log, record rc and seconds in $OUT/steps.tsv
step() {
    local name=$1 limit=$2 start rc
    shift 2
    start=$(date +%s)
    echo "== $name (timeout ${limit}s, at $(elapsed)s): $*" | tee -a "$OUT/steps.log"
    if [ "$DRY" = 1 ]; then
        rc=0
    else
        timeout --kill-after=10 "$limit" "$@" >"$OUT/$name.log" 2>&1
        rc=$?
    fi
    printf '%s\t%s\t%s\n' "$name" "$rc" "$(($(date +%s) - start))" | tee -a "$OUT/steps.tsv"
    return 0
}

# the time a step may take: its own cap, or what is left of the budget (less a margin), whichever is smaller
left() { local rest=$((TOTAL_S - $(elapsed) - 15)); [ "$rest" -lt "$1" ] && echo "$rest" || echo "$1"; }

printf 'step\trc\tseconds\n' >"$OUT/steps.tsv"
{ nvidia-smi || true; "$PYTHON" -c 'import torch; print(torch.__version__, torch.version.cuda, torch.cuda.is_available())' || true; } \
    >"$OUT/environment.txt" 2>&1

# 1. cuda_check (parts starting past 250 s are skipped and reported: results/benchmarks/device_logs/steps.log)
step cuda_check "$(left 300)" "$PYTHON" benchmarks/cuda_check.py --max-seconds 250 \
    --parts train,sample,pipeline --out results/benchmarks/cuda_check.json

# 2. the default DAG on the GPU, in a scratch copy of the project
RUN=$SCRATCH/run
mkdir -p "$RUN"
cp -r Snakefile dvc.yaml params.yaml workflow configs src "$RUN"/
step default_dag "$(left 200)" env -C "$RUN" MEDSR_DEVICE=cuda "$PYTHON" -m snakemake --cores 16 --max-threads 2 \
    --resources "gpu_mem_mb=$GPU_MEM_MB"
# one archive: the device tool returns at most 8 files, two folders deep (a failed stage's log must come back)
tar -C "$RUN" -czf "$OUT/default_run.tar.gz" --exclude='*.png' --exclude='*.npy' --exclude='*.html' \
    --exclude='*.safetensors' results logs .snakemake/log 2>/dev/null || true

# 3. bf16 vs fp32 sampling on that run's val images (needs step 2's models and data)
step quality "$(left 75)" "$PYTHON" benchmarks/cuda_check.py --parts quality --run "$RUN" --append \
    --out results/benchmarks/cuda_check.json

# 4. torch.compile, only with time left
if [ "$(left 150)" -ge 60 ]; then
    step compile "$(left 150)" "$PYTHON" benchmarks/cuda_check.py --parts compile \
        --out results/benchmarks/cuda_check_compile.json
fi

cp results/benchmarks/cuda_check*.json "$OUT"/ 2>/dev/null || true
echo "device_run: done in $(elapsed) s; steps in $OUT/steps.tsv" | tee -a "$OUT/steps.log"
[ "$DRY" = 1 ] || rm -rf "$SCRATCH"
exit 0
