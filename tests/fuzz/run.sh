#!/usr/bin/env bash
# Runs libFuzzer targets from build-fuzz/fuzz/ for a bounded time each.
# usage: tests/fuzz/run.sh SECONDS [target...]   (default: every built target)
#   FUZZ_JOBS   targets run at once (default 2), each under nice
#   FUZZ_BUILD  build dir (default build-fuzz); FUZZ_BIN_DIR the targets'
#               directory (default $FUZZ_BUILD/fuzz), FUZZ_LOGS the logs' (default
#               $FUZZ_BUILD/fuzz-logs)
# Each target starts from tests/fuzz/corpus/<target>/ (seeds and every crash
# ever found: a regression crashes at once) and writes new inputs to
# $FUZZ_BUILD/corpus/<target>/, findings to $FUZZ_BUILD/artifacts/<target>/.
# Prints one line per target (executions, result) and "N passed, N failed".
set -u
secs=${1:-20}; shift || true
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root" || exit 1
build=${FUZZ_BUILD:-build-fuzz}
jobs=${FUZZ_JOBS:-2}
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for f in tests/fuzz/*.c; do targets+=("$(basename "$f" .c)"); done
fi
bindir=${FUZZ_BIN_DIR:-$build/fuzz}
logs=${FUZZ_LOGS:-$build/fuzz-logs}; mkdir -p "$logs"

run_one() { # target -> writes $logs/<t>.log and $logs/<t>.rc
  local t=$1 bin="$bindir/$1"
  mkdir -p "$build/corpus/$t" "$build/artifacts/$t" "tests/fuzz/corpus/$t"
  local dict=(); [ -f "tests/fuzz/$t.dict" ] && dict=(-dict="tests/fuzz/$t.dict")
  # -timeout: one input may not take 10 s; -rss_limit_mb bounds memory; the
  # outer timeout bounds everything even if the fuzzer hangs on exit.
  ASAN_OPTIONS=abort_on_error=1:detect_leaks=1:allocator_may_return_null=1 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  timeout -k 10 $((secs + 60)) nice -n 10 "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$build/artifacts/$t/" "${dict[@]}" \
    "$build/corpus/$t" "tests/fuzz/corpus/$t" </dev/null >"$logs/$t.log" 2>&1
  echo $? >"$logs/$t.rc"
}

passed=0; failed=0; started=()
i=0
while [ $i -lt ${#targets[@]} ]; do
  pids=()
  for _ in $(seq 1 "$jobs"); do
    [ $i -lt ${#targets[@]} ] || break
    t=${targets[$i]}; i=$((i + 1))
    if [ ! -x "$bindir/$t" ]; then
      echo "not ok - $t: $bindir/$t not built" >&2; failed=$((failed + 1)); continue
    fi
    run_one "$t" & pids+=($!)
    started+=("$t")
  done
  for p in "${pids[@]}"; do wait "$p"; done
done
for t in "${started[@]}"; do
  rc=$(cat "$logs/$t.rc" 2>/dev/null || echo 99)
  execs=$(grep -aoE 'stat::number_of_executed_units: *[0-9]+' "$logs/$t.log" | grep -oE '[0-9]+$' | tail -1)
  if [ "$rc" = 0 ]; then
    echo "ok - $t: ${execs:-?} executions in ${secs}s" >&2; passed=$((passed + 1))
  else
    echo "not ok - $t: exit $rc after ${execs:-?} executions; log $logs/$t.log, input in $build/artifacts/$t/" >&2
    grep -aE -A 25 'ERROR: |runtime error|check failed|Test unit written' "$logs/$t.log" | head -n 40 >&2
    failed=$((failed + 1))
  fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
