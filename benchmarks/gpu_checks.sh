#!/usr/bin/env bash
# Every GPU check of benchmarks/RESULTS.md in one run, most wanted first, each under its own time
# limit (9 minutes in all at most) so one that hangs cannot take the others' time:
#   1. the engine's CUDA tests (CUDA frames and corruptions equal the CPU's),
#   2. one AugMix epoch of WRN-40-2 through the training loop, beside a standard one,
#   3. the CIFAR-10-P generator on the GPU against the per-image reference on the CPU,
#   4. the paper models' training throughput with and without AMP / channels_last / compile.
# Outputs go to $OUT (default benchmarks/gpu-out), one file per check.
#
#   bash benchmarks/gpu_checks.sh
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-benchmarks/gpu-out}
mkdir -p "$out"
export PYTHONPATH=src PYTHONUNBUFFERED=1
python=${PYTHON:-python3}

check() {  # check NAME SECONDS COMMAND...: runs COMMAND, its output into $out/NAME.txt
    local name=$1 limit=$2
    shift 2
    echo "== $name (limit ${limit}s): $*"
    timeout "$limit" "$@" 2>&1 | tee "$out/$name.txt"
    echo "== $name: exit ${PIPESTATUS[0]}"
}

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/device.txt"
check cuda_tests 120 "$python" -m pytest -q -p no:cacheprovider tests/test_corruptions.py tests/test_perturbations.py -k cuda
check augmix_epoch 150 "$python" benchmarks/augmix_epoch.py --device cuda
check perturbations 90 "$python" benchmarks/perturbations.py --device cuda --n 500 --threads 1 --repeats 1
check model_throughput 180 "$python" benchmarks/model_throughput.py --device cuda
