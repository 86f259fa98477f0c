#!/usr/bin/env bash
# The CUDA backend on a GPU machine that has CMake, nvcc and PyTorch but no
# Node (docs/cuda.md): builds the native targets (Release, for this GPU's
# architecture), runs the parity tests (test_cuda_ops, test_cuda_models:
# every op and every architecture against the CPU engine and the PyTorch
# goldens), the kernel and decode benchmarks (bench_gpu_kernels) and the
# PyTorch side (bench/gpu/sdpa.py: torch SDPA in the same run, op parity
# against PyTorch), and writes
#   bench/results/gpu-<gpu name>.json   every number
#   bench/results/gpu-<gpu name>.txt    this run's log
# No network, no Node, no pip: python3 with torch and numpy.
#   bench/gpu/run.sh              (BUILD=dir to reuse a build, QUICK=1 to skip the 64k runs)
set -euo pipefail

cd "$(dirname "$0")/../.."
start=$(date +%s)
BUILD=${BUILD:-/tmp/roost-build-gpu}
PY=${PYTHON:-python3}
TMP=$(mktemp -d /tmp/roost-gpu-run.XXXXXX)
if ! command -v nvcc > /dev/null && [ -x /usr/local/cuda/bin/nvcc ]; then export PATH=/usr/local/cuda/bin:$PATH; fi
NVCC=${NVCC:-$(command -v nvcc || true)}
if [ -z "$NVCC" ]; then echo "nvcc not found (set NVCC=/path/to/nvcc)"; exit 1; fi

GPU_NAME=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -n 1)
SLUG=$(printf '%s' "$GPU_NAME" | tr 'A-Z' 'a-z' | sed -e 's/[^a-z0-9]\{1,\}/-/g' -e 's/^-//' -e 's/-$//')
CAP=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -n 1 | tr -d ' .')
ARCH=${ARCH:-${CAP:-90}}
mkdir -p bench/results
LOG=bench/results/gpu-$SLUG.txt
JSON=bench/results/gpu-$SLUG.json
exec > >(tee "$LOG") 2>&1

echo "== GPU"
nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv
echo "GPU: $GPU_NAME (sm_$ARCH)"
"$NVCC" --version | tail -n 2
cmake --version | head -n 1
"$PY" -c 'import torch, numpy; print("torch", torch.__version__, "cuda", torch.version.cuda, "numpy", numpy.__version__)'

echo "== build (Release, CUDA architecture $ARCH)"
b0=$(date +%s)
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES="$ARCH" -DCMAKE_CUDA_COMPILER="$NVCC" \
  | tee "$TMP/configure.txt"
grep -q "roost: CUDA backend on" "$TMP/configure.txt" || { echo "CMake did not enable the CUDA backend"; exit 1; }
cmake --build "$BUILD" -j "$(nproc)" --target test_cuda_ops test_cuda_models bench_gpu_kernels test_device
build_s=$(( $(date +%s) - b0 ))
echo "build: ${build_s} s"

echo "== parity tests"
ops_rc=0
# doctest executables: --success logs every check with its figures, not only failures
timeout 90 "$BUILD/test_cuda_ops" --success || ops_rc=$?
models_rc=0
timeout 120 "$BUILD/test_cuda_models" --success || models_rc=$?
dev_rc=0
timeout 30 "$BUILD/test_device" || dev_rc=$?
echo "test_cuda_ops exit $ops_rc, test_cuda_models exit $models_rc, test_device exit $dev_rc"

echo "== kernel and decode benchmarks"
bench_args=("$TMP/kernels.json" --parity "$TMP/parity")
if [ "${QUICK:-0}" = 1 ]; then bench_args+=(--quick); fi
bench_rc=0
timeout 150 "$BUILD/bench_gpu_kernels" "${bench_args[@]}" || bench_rc=$?

echo "== PyTorch: SDPA in the same run, op parity"
py_rc=0
if [ ! -s "$TMP/kernels.json" ]; then echo "no kernel results (bench_gpu_kernels exit $bench_rc)"; py_rc=1; else
total_s=$(( $(date +%s) - start ))
timeout 100 "$PY" bench/gpu/sdpa.py --kernels "$TMP/kernels.json" --parity "$TMP/parity" --out "$JSON" \
  --tests "test_cuda_ops=$ops_rc,test_cuda_models=$models_rc,test_device=$dev_rc" --build-s "$build_s" \
  --total-s "$total_s" || py_rc=$?
fi

echo "== done in $(( $(date +%s) - start )) s: $JSON, $LOG"
rm -rf "$TMP"
if [ "$ops_rc" != 0 ] || [ "$models_rc" != 0 ] || [ "$dev_rc" != 0 ] || [ "$py_rc" != 0 ] || [ "$bench_rc" != 0 ]; then
  echo "FAILED: test_cuda_ops $ops_rc, test_cuda_models $models_rc, test_device $dev_rc, bench_gpu_kernels $bench_rc, torch parity $py_rc"
  exit 1
fi
