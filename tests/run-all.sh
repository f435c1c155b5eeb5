#!/usr/bin/env bash
# Every test Kiln has, in one command (the README's test command; .ci/run calls exactly this):
#   1. native tests (GoogleTest under ctest), Release build
#   2. the same native tests built with AddressSanitizer + UndefinedBehaviorSanitizer, then with
#      ThreadSanitizer (all but the exhaustive small-size GEMM sweep: slow under TSan, and the
#      other GEMM tests cover its threaded paths)
#   3. the Maven build on JDK 17: libkiln + JNI glue, Java unit tests three times (best ISA,
#      forced AVX2, forced portable), the packaged-jar integration tests, the CLI tests
#   4. the Java tests again on JDK 25 (Temurin), when installed
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
start=$(date +%s)
step() { printf '\n=== %s (%ss)\n' "$1" "$(( $(date +%s) - start ))"; }

step "native tests, Release"
(cd native && cmake --preset release --log-level=WARNING && cmake --build --preset release \
  && ctest --preset release)

step "native tests, ASan + UBSan"
(cd native && cmake --preset asan --log-level=WARNING && cmake --build --preset asan \
  && ctest --preset asan)

step "native tests, ThreadSanitizer"
(cd native && cmake --preset tsan --log-level=WARNING && cmake --build --preset tsan \
  && ctest --preset tsan)

jdk17="${KILN_JDK17:-}"
if [ -z "$jdk17" ]; then
  for d in /usr/lib/jvm/java-17-openjdk-amd64 /usr/lib/jvm/temurin-17-jdk-amd64; do
    [ -x "$d/bin/javac" ] && jdk17="$d" && break
  done
fi
step "Java build and tests, JDK 17 (${jdk17:-default java})"
JAVA_HOME="${jdk17:-${JAVA_HOME:-}}" ./mvnw -B -ntp verify

jdk25="${KILN_JDK25:-/usr/lib/jvm/temurin-25-jdk-amd64}"
if [ -x "$jdk25/bin/java" ]; then
  step "Java build and tests, JDK 25 ($jdk25)"
  JAVA_HOME="$jdk25" ./mvnw -B -ntp verify
else
  echo "JDK 25 not found at $jdk25: skipping the JDK 25 run (set KILN_JDK25 to its home)"
fi

step "all tests passed"
