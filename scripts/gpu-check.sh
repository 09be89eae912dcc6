#!/usr/bin/env bash
# GPU check of the CUDA kernels (SPEC.md §9): the GPU tests (ignored without a GPU), the device
# sweep over every f32 input (SPEC.md §10.5), then the bandwidth benchmark of the fused kernel
# (N = 512, C = 360,000, f32) against a device-to-device copy of the same bytes, measured in the
# same run. The tests and the benchmark finish in under 5 minutes; the device sweep (14 complete
# f32 sweeps, bounded by the CPU reference, not the device) is estimated at 7 to 10 minutes on
# 16 cores (not yet run on a device): CMARGIN_DEVICE_STRIDE=7 cuts it to about a seventh.
#
# Runs from a checkout of this repository on a machine with an NVIDIA GPU, the CUDA 13.0
# driver (580) and no Rust toolchain. Build and gather beforehand, on a machine with Rust:
#
#   cargo test --release --no-run
#       # prints "Executable tests/main.rs (<target>/release/deps/it-<hash>)": the test binary.
#       # It links only libc, libm and libgcc_s and needs glibc >= 2.34 (built on Debian 12).
#   python3 -m pip install --target .cuda nvidia-cuda-nvrtc==13.0.88
#       # NVRTC 13.0 (pinned: 13.5 emits PTX ISA 9.5, which the CUDA 13.0 driver rejects).
#
# Carry to the GPU machine: the test binary (target/release/deps/it-<hash>) and .cuda/.
# The kernels' source is embedded in the binary and compiled by NVRTC at run time.
#
# Usage: scripts/gpu-check.sh [TEST_BINARY]
#   TEST_BINARY defaults to the newest executable target/release/deps/it-*.
set -uo pipefail
cd "$(dirname "$0")/.."

BIN="${1:-$(find target/release/deps -maxdepth 1 -type f -name 'it-*' -executable -printf '%T@ %p\n' 2>/dev/null | sort -rn | head -1 | cut -d' ' -f2-)}"
if [ -z "$BIN" ] || [ ! -x "$BIN" ]; then
  echo "gpu-check: no test binary (pass its path, or build it: cargo test --release --no-run)" >&2
  exit 2
fi
NVRTC_LIB="$PWD/.cuda/nvidia/cu13/lib"
if [ ! -e "$NVRTC_LIB/libnvrtc.so.13" ]; then
  echo "gpu-check: $NVRTC_LIB/libnvrtc.so.13 missing (pip install --target .cuda nvidia-cuda-nvrtc==13.0.88)" >&2
  exit 2
fi
export LD_LIBRARY_PATH="$NVRTC_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
LOG="$(mktemp -d)"

echo "== machine"
nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv 2>/dev/null \
  || echo "nvidia-smi: not available"
ldd --version 2>/dev/null | head -1
echo "test binary: $BIN"

step() { # name, timeout (s), command...
  local name="$1" limit="$2"
  shift 2
  local t0 t1 rc
  t0=$(date +%s)
  timeout "$limit" "$@" >"$LOG/$name.log" 2>&1
  rc=$?
  t1=$(date +%s)
  cat "$LOG/$name.log"
  printf '%s\t%s\t%s\n' "$name" "$rc" "$((t1 - t0))" >>"$LOG/steps.tsv"
}

echo "== GPU, NVRTC and host-math tests (the ignored ones included: here they must run)"
step tests 200 "$BIN" cuda_ --include-ignored --skip bench_fused_bandwidth --test-threads=2

echo "== device sweep (every f32 input, CUDA kernels vs host build and reference; SPEC.md §10.5)"
# Stride 1 (every float): roughly 30 s per (preset, params) on 16 cores, the CPU reference
# bounding it. CMARGIN_DEVICE_STRIDE=7 gives a quicker pass.
step device-sweep 900 env REQUIRE_GPU=1 CMARGIN_DEVICE_STRIDE="${CMARGIN_DEVICE_STRIDE:-1}" \
  "$BIN" --ignored --exact sweep_gpu::device_sweep_every_f32_input --nocapture

echo "== bandwidth benchmark"
step benchmark 90 "$BIN" --ignored --exact cuda_gpu::bench_fused_bandwidth --nocapture

echo
echo "== summary"
printf '%-10s %-8s %8s\n' step result seconds
status=0
while IFS=$'\t' read -r name rc secs; do
  result=pass
  [ "$rc" = 0 ] || { result="FAIL($rc)"; status=1; }
  printf '%-10s %-8s %8s\n' "$name" "$result" "$secs"
done <"$LOG/steps.tsv"
grep -h "test result" "$LOG/tests.log" "$LOG/device-sweep.log" "$LOG/benchmark.log" | sed 's/^/  /'
grep -h "^device sweep" "$LOG/device-sweep.log" | sed 's/^/  /'
grep -hE "^(kernel |fused |device-to-device|fused / copy)" "$LOG/benchmark.log" | sed 's/^/  /'
exit $status
