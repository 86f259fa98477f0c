#!/usr/bin/env bash
# Host emulation of the CUDA backend, for machines without a GPU: the CUDA
# models' host code (cuda/*.cpp: weights upload, attention plans, KV caches,
# rings and states, row moves, the per-step uploads) runs against host
# implementations of cuda/ops.h (emu_ops.cpp, same rounding points as the
# kernels) and a host cuda/runtime.h (emu_runtime.cpp, allocations filled with
# NaN), under AddressSanitizer, through test/cuda/test_cuda_models.cpp: every
# architecture against the CPU engine and the PyTorch goldens. The kernels
# themselves are only checked on a GPU (test_cuda_ops, bench/gpu/run.sh).
#   test/cuda/emu/run.sh          (BUILD=dir for the CPU-only core build)
set -euo pipefail
cd "$(dirname "$0")/../../.."
B=${BUILD:-/tmp/roost-build-emu}
cmake -S . -B "$B" -DCMAKE_BUILD_TYPE=Release -DROOST_CUDA=OFF > /dev/null
cmake --build "$B" -j "$(nproc)" --target roost_core > /dev/null
CXX=${CXX:-g++}
# test/cuda/emu first on the include path: its cuda_runtime_api.h stands in for the real one.
FLAGS=(-std=c++20 -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -DROOST_CUDA_EMULATION
       -Wall -Wextra -Wno-unused-parameter -I test/cuda/emu -I cpp)
EMU=(cuda/attention_plan.cpp cuda/weights_cuda.cpp test/cuda/emu/emu_runtime.cpp test/cuda/emu/emu_ops.cpp)
MODELS=(cuda/model_base.cpp cuda/gpt2_cuda.cpp cuda/perceiver_ar_cuda.cpp cuda/block_recurrent_cuda.cpp cuda/backend.cpp)
# The op test against the emulated ops checks the test itself (references, bounds) and the attention planning.
"$CXX" "${FLAGS[@]}" "${EMU[@]}" test/cuda/test_cuda_ops.cpp "$B/libroost_core.a" -lpthread -o "$B/test_cuda_ops_emulated"
"$CXX" "${FLAGS[@]}" "${EMU[@]}" "${MODELS[@]}" test/cuda/test_cuda_models.cpp "$B/libroost_core.a" -lpthread \
  -o "$B/test_cuda_models_emulated"
rc=0
"$B/test_cuda_ops_emulated" | grep -v '^PASS' || rc=1
"$B/test_cuda_models_emulated" || rc=1
exit $rc
