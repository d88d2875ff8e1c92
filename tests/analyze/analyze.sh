#!/usr/bin/env bash
# `make analyze`: cppcheck and clang-tidy (settings: .clang-tidy) over
# gateway/, controlplane/ and common/. Clean means: cppcheck reports nothing,
# and every clang-tidy finding is listed in tests/analyze/baseline.txt.
#
# The baseline holds findings in files whose owners have them to fix (one
# line each: "file|check|source line", no line numbers, so edits elsewhere do
# not disturb it). A new finding fails; a baseline entry that no longer
# matches is printed so it can be deleted.
#   ANALYZE_JOBS   clang-tidy processes at once (default 2)
#   BUILD          build dir whose proto/ holds the generated headers (default build)
set -u
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root" || exit 1
build=${BUILD:-build}
jobs=${ANALYZE_JOBS:-2}
for t in cppcheck clang-tidy; do
  command -v "$t" >/dev/null || { echo "analyze: $t not found (apt-get install cppcheck clang-tidy)" >&2; exit 2; }
done
[ -f "$build/proto/gateway.pb-c.h" ] || { echo "analyze: $build/proto/gateway.pb-c.h missing: run make first" >&2; exit 2; }
out=$(mktemp -d /tmp/analyze.XXXXXX)
trap 'rm -rf "$out"' EXIT
incs=(-Icommon -Igateway -Icontrolplane -I"$build/proto" -I/usr/include/postgresql)
fail=0

echo "== cppcheck"
cppcheck -q --std=c11 -D_GNU_SOURCE -D__GNUC__ -DPROTOBUF_C_VERSION_NUMBER=1004001 \
  -DPROTOBUF_C_MIN_COMPILER_VERSION=1000000 -DPROTOBUF_C__BEGIN_DECLS= -DPROTOBUF_C__END_DECLS= \
  --enable=warning,portability,performance --inline-suppr --suppress=missingIncludeSystem \
  --error-exitcode=1 -j "$jobs" "${incs[@]}" common gateway controlplane 2>"$out/cppcheck.txt"
if [ -s "$out/cppcheck.txt" ]; then cat "$out/cppcheck.txt"; fail=1; else echo "  clean"; fi

echo "== clang-tidy ($(nproc) cores, $jobs at once)"
files=$(ls common/*.c gateway/*.c gateway/providers/*.c controlplane/*.c controlplane/api/*.c)
echo "$files" | xargs -P "$jobs" -I{} sh -c 'clang-tidy -quiet "$1" -- -std=c11 -D_GNU_SOURCE '"${incs[*]}"' >"$2/$(echo "$1" | tr / _).tidy" 2>/dev/null' _ {} "$out"
# one finding per line: file|check|the source line it points at
for f in "$out"/*.tidy; do
  awk -v root="$root/" '
    /^[^ ].*:[0-9]+:[0-9]+: (warning|error): .*\[[a-z0-9.,-]+\]$/ {
      if (loc != "") print loc "|" chk "|" src
      split($0, a, ":"); file = a[1]; sub(root, "", file)
      chk = $0; sub(/.*\[/, "", chk); sub(/[],].*/, "", chk)
      loc = file; full = $0; getline src; gsub(/^[ \t]+|[ \t]+$/, "", src); next }
    END { if (loc != "") print loc "|" chk "|" src }' "$f"
done | sort >"$out/findings.txt"
base=tests/analyze/baseline.txt
grep -v '^#' "$base" 2>/dev/null | grep -v '^$' | sort >"$out/baseline.txt"
comm -23 "$out/findings.txt" "$out/baseline.txt" >"$out/new.txt"
comm -13 "$out/findings.txt" "$out/baseline.txt" >"$out/gone.txt"
comm -12 "$out/findings.txt" "$out/baseline.txt" >"$out/known.txt"
if [ -s "$out/known.txt" ]; then
  echo "  $(wc -l <"$out/known.txt") known finding(s) in the baseline (files owned elsewhere), see $base"
fi
if [ -s "$out/gone.txt" ]; then
  echo "  baseline entries that no longer match (fixed? delete them):"; sed 's/^/    /' "$out/gone.txt"
fi
if [ -s "$out/new.txt" ]; then
  echo "  NEW findings:"; sed 's/^/    /' "$out/new.txt"
  echo "  (details: rerun clang-tidy on the file; a finding that is not a bug gets a NOLINT(check) with a reason)"
  fail=1
else
  echo "  clean (no finding outside the baseline)"
fi
[ $fail -eq 0 ] && echo "analyze: clean" || echo "analyze: FAILED"
exit $fail
