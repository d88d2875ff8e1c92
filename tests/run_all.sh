#!/usr/bin/env bash
# Runs every test suite and sums them: unit binaries (each prints
# "N passed, N failed"), then the integration suites. Last line: the total.
# usage: tests/run_all.sh BUILD_DIR BIN_DIR [unit|integration]
set -u
build=${1:-build}; bin=${2:-bin}; only=${3:-all}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
total_p=0; total_f=0
tally() { # reads a suite's output on stdin, adds its last "N passed, N failed"
  local line; line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' | tail -1)
  if [ -z "$line" ]; then echo "  (suite printed no result: counted as 1 failure)"; total_f=$((total_f+1)); return; fi
  total_p=$((total_p + $(echo "$line" | cut -d' ' -f1)))
  total_f=$((total_f + $(echo "$line" | cut -d' ' -f3)))
}
run_suite() { # name, command...
  local name=$1; shift
  echo "== $name"
  local out; out=$(mktemp)
  "$@" >"$out" 2>"$out.err"; local rc=$?
  cat "$out.err" | sed 's/^/  /' | grep -vE '^  ok - ' | tail -n 60
  tail -n 1 "$out" | sed 's/^/  /'
  if [ $rc -ne 0 ] && ! grep -qE '^[0-9]+ passed, [1-9][0-9]* failed' "$out"; then
    echo "  (exit code $rc)"; total_f=$((total_f+1))
  fi
  tally <"$out"
  rm -f "$out" "$out.err"
}
if [ "$only" = all ] || [ "$only" = unit ]; then
  for t in "$build"/tests/*_test; do
    [ -x "$t" ] || continue
    run_suite "unit $(basename "$t")" "$t"
  done
fi
if [ "$only" = all ] || [ "$only" = integration ]; then
  for s in tests/integration/suite_*.sh; do
    [ -f "$s" ] || continue
    run_suite "integration $(basename "$s" .sh)" env GW_BIN_DIR="$root/$bin" bash "$s"
  done
fi
echo "$total_p passed, $total_f failed"
[ "$total_f" -eq 0 ]
