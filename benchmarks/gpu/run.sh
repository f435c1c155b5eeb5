#!/usr/bin/env bash
# benchmarks/gpu/run.sh OUTDIR — the one command for a lent GPU machine (nvcc, CMake, ninja and
# PyTorch there; no Java, Maven or network). It builds libkiln (CPU) and libkiln_cuda, runs the
# native tests (the CUDA ones compare every kernel with the CPU kernels on the same inputs),
# compute-sanitizer memcheck where present, then the GPU benchmarks and their cuBLAS peers (through
# PyTorch) in the same run, and writes OUTDIR/{run.log, ctest.log, memcheck.log, kiln.jsonl,
# peers.jsonl, gpu.json}.
#
# GoogleTest: the GPU machine has none; benchmarks/gpu/prepare.sh copies Debian's sources into
# target/gpu-carry (carry that path). From the device tool:
#   run(command="bash benchmarks/gpu/run.sh $OUT", carry=["target/gpu-carry"], timeout_s=300)
# Then, here: copy OUTDIR/gpu.json to benchmarks/results/gpu-DATE-GPU.json and run
# benchmarks/gpu/doc.py on it for the gpu table of docs/performance.md.
set -uo pipefail
out="${1:?usage: benchmarks/gpu/run.sh OUTDIR}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
mkdir -p "$out"
exec > >(tee "$out/run.log") 2>&1
cd "$root"
start=$(date +%s)
step() { printf '\n=== %s (%ss)\n' "$1" "$(( $(date +%s) - start ))"; }

step "machine"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv || true
nvcc --version | tail -1

step "build"
gtest=()
[ -d target/gpu-carry/googletest ] && gtest=(-DKILN_GTEST_SOURCE="$root/target/gpu-carry/googletest" -DCMAKE_DISABLE_FIND_PACKAGE_GTest=ON)
gen=(); command -v ninja >/dev/null && gen=(-G Ninja)
cmake -S native -B target/native-gpu "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DKILN_BUILD_TESTS=ON "${gtest[@]}" --log-level=WARNING \
  && cmake --build target/native-gpu --parallel "$(nproc)" --target kiln_cuda_tests bench_cuda \
  || { echo "BUILD FAILED"; exit 1; }

# Only the CUDA tests run here: the CPU suite runs in CI and on the development machine, and device
# time is short. Each step has its own time limit so that a hang still leaves the logs.
step "CUDA tests (each kernel against the CPU kernels)"
timeout 60 target/native-gpu/cuda/kiln_cuda_tests > "$out/ctest.log" 2>&1
tests_rc=$?
grep -E "^\[  (FAILED|PASSED|SKIPPED) |Failure|error|device:" "$out/ctest.log" | head -40

step "compute-sanitizer memcheck"
if command -v compute-sanitizer >/dev/null; then
  timeout 100 compute-sanitizer --tool memcheck --leak-check full target/native-gpu/cuda/kiln_cuda_tests \
    --gtest_filter='-Cuda.DeviceInfoAndPool' > "$out/memcheck.log" 2>&1
  tail -3 "$out/memcheck.log"
else
  echo "compute-sanitizer not found: memcheck not run" | tee "$out/memcheck.log"
fi

step "benchmarks: Kiln"
timeout 90 target/native-gpu/cuda/bench_cuda | tee "$out/kiln.jsonl"
step "profile: bf16 GEMM 4096^3 under ncu (the default sm90 variant; KILN_GPU_NCU=1)"
if [ "${KILN_GPU_NCU:-0}" != 1 ]; then
  echo "skipped (set KILN_GPU_NCU=1)"
elif command -v ncu >/dev/null; then
  KILN_CUDA_GEMM=sm90 timeout 90 ncu --clock-control none --section SpeedOfLight --section ComputeWorkloadAnalysis \
    --section WarpStateStats --section SchedulerStats --section MemoryWorkloadAnalysis -k regex:sm90 -c 1 \
    target/native-gpu/cuda/bench_cuda gemm 4096 > "$out/ncu.log" 2>&1
  grep -E "Throughput|Duration|Stall|Pipe|Issue|Eligible|Active Warps|Cycles" "$out/ncu.log" | head -40
else
  echo "ncu not found: no profile"
fi
step "benchmarks: cuBLAS through PyTorch"
timeout 90 python3 benchmarks/gpu/peers.py | tee "$out/peers.jsonl"
step "report"
python3 benchmarks/gpu/report.py "$out" "benchmarks/gpu/run.sh" || true
step "done (native tests rc=$tests_rc)"
exit $tests_rc
