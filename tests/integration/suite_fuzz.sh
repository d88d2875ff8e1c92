#!/usr/bin/env bash
# Fuzz regression suite for `make test`: builds the libFuzzer targets of
# tests/fuzz/ (clang, ASan + UBSan, into build-fuzz/) and runs each for
# FUZZ_SUITE_SECONDS (default 20), two at a time. Every run starts with the
# whole regression corpus (seeds + every crash ever found), so an old bug
# coming back fails at once. One test per target: passed if its run ends
# without a finding. `make fuzz` is the long version (FUZZ_SECONDS=600).
set -u
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root" || exit 1
secs=${FUZZ_SUITE_SECONDS:-20}
if ! command -v clang >/dev/null; then
  echo "suite_fuzz: clang not found" >&2; echo "0 passed, 1 failed"; exit 1
fi
if ! make --no-print-directory -s fuzz-build >build-fuzz-suite-build.log 2>&1; then
  tail -n 30 build-fuzz-suite-build.log >&2; rm -f build-fuzz-suite-build.log
  echo "suite_fuzz: building the fuzz targets failed" >&2; echo "0 passed, 1 failed"; exit 1
fi
rm -f build-fuzz-suite-build.log
FUZZ_JOBS=${FUZZ_JOBS:-2} exec tests/fuzz/run.sh "$secs"
