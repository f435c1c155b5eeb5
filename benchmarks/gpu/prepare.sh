#!/usr/bin/env bash
# Run here (not on the GPU machine): puts what benchmarks/gpu/run.sh needs and the GPU machine lacks
# into target/gpu-carry (GoogleTest sources, from Debian's libgtest-dev).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
rm -rf "$root/target/gpu-carry" && mkdir -p "$root/target/gpu-carry"
cp -r /usr/src/googletest "$root/target/gpu-carry/googletest"
du -sh "$root/target/gpu-carry"
