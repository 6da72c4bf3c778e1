#!/usr/bin/env bash
# scripts/fuzz.sh TARGET|all SECONDS — build (if needed) and run libFuzzer
# harnesses of tests/fuzz/ on the readers of outside files.
#
#   scripts/fuzz.sh fuzz_idx 60      # one target for 60 s ("idx" works too)
#   scripts/fuzz.sh all 30           # every target, 30 s each
#   scripts/fuzz.sh list             # the targets
#   scripts/fuzz.sh repro fuzz_idx FILE   # run one saved input again (prints the report)
#   FUZZ_JOBS=2 scripts/fuzz.sh all 30    # two targets at a time (one core each; CI)
#
# Targets: fuzz_idx fuzz_checkpoint fuzz_qnnx fuzz_imdb_json fuzz_cifar_bin
# fuzz_image fuzz_svhn_mat. Each runs on a fresh copy of its seed corpus
# (tests/fuzz/corpus/<target>/, made by tests/fuzz/make_corpus.py) with
# -timeout=2 -rss_limit_mb=2048, so a crash, sanitizer report, uncaught
# exception, input slower than 2 s or allocation over 2 GB is a failure.
# Prints "fuzz: TARGET PASS|FAIL ..." per target; findings (crash-*, leak-*,
# timeout-*, oom-* inputs) and the log are kept in fuzz-findings/<target>/
# (git-ignored). The last line, as scripts/test.sh: "N passed, N failed"
# (targets). Exit status is non-zero if any target failed.
#
# FUZZ_OUT=DIR puts findings and logs in DIR/<target> instead.
#
# The build: build-fuzz (FUZZ_BUILD overrides), configured with clang++ and
# -Dfuzz=true; every library gets -fsanitize=fuzzer-no-link plus ASan+UBSan
# (UBSan fatal), the harnesses -fsanitize=fuzzer; -O1 with line tables only
# (CI builds it from scratch: about 2/3 of -O2 -g's build time). An existing
# build dir keeps its configuration. The g++ build is untouched.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
B="${FUZZ_BUILD:-build-fuzz}"
FOUT="${FUZZ_OUT:-fuzz-findings}"   # where findings and logs go
ALL=(fuzz_idx fuzz_checkpoint fuzz_qnnx fuzz_imdb_json fuzz_cifar_bin fuzz_image fuzz_svhn_mat)

usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
[ $# -ge 1 ] || usage
if [ "$1" = list ]; then printf '%s\n' "${ALL[@]}"; exit 0; fi

# allocator_may_return_null=1: a huge malloc returns NULL (operator new throws
# std::bad_alloc) as glibc does, instead of aborting; -rss_limit_mb still
# reports any allocation over 2 GB as a finding.
export ASAN_OPTIONS="detect_leaks=1:allocator_may_return_null=1:${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:suppressions=$ROOT/scripts/ubsan.supp"
export LSAN_OPTIONS="suppressions=$ROOT/scripts/lsan.supp:print_suppressions=0"
export OMP_NUM_THREADS=1   # one input at a time; no OpenMP pool noise

build() {
  if [ ! -f "$B/build.ninja" ]; then
    command -v clang++ >/dev/null || { echo "fuzz: clang++ not found (scripts/setup.sh --fuzz installs it)"; return 1; }
    CXX=clang++ CC=clang meson setup "$B" -Doptimization=1 -Ddebug=false -Dfuzz=true \
      -Db_sanitize=address,undefined -Db_lundef=false \
      -Dcpp_args="-gline-tables-only -fsanitize=fuzzer-no-link -fno-sanitize-recover=all -fno-omit-frame-pointer" \
      -Dcpp_link_args="-fsanitize=fuzzer-no-link" >/dev/null || { echo "fuzz: meson setup $B failed"; return 1; }
  fi
  ninja -C "$B" "${@/#/tests/fuzz/}" >/dev/null || { echo "fuzz: build failed (ninja -C $B ${*/#/tests/fuzz/})"; return 1; }
}

norm() { case "$1" in fuzz_*) echo "$1" ;; *) echo "fuzz_$1" ;; esac; }

if [ "$1" = repro ]; then
  [ $# -eq 3 ] || usage
  t=$(norm "$2"); build "$t" || exit 1
  exec "$B/tests/fuzz/$t" -timeout=2 -rss_limit_mb=2048 "$3"
fi

[ $# -eq 2 ] || usage
SECS="$2"
[[ "$SECS" =~ ^[0-9]+$ ]] && [ "$SECS" -ge 1 ] || { echo "fuzz: SECONDS must be a positive integer, got '$SECS'"; exit 2; }
if [ "$1" = all ]; then targets=("${ALL[@]}"); else targets=("$(norm "$1")"); fi
for t in "${targets[@]}"; do
  printf '%s\n' "${ALL[@]}" | grep -qx "$t" || { echo "fuzz: unknown target '$t' (scripts/fuzz.sh list)"; exit 2; }
done
JOBS="${FUZZ_JOBS:-1}"
[[ "$JOBS" =~ ^[0-9]+$ ]] && [ "$JOBS" -ge 1 ] || { echo "fuzz: FUZZ_JOBS must be a positive integer, got '$JOBS'"; exit 2; }
build "${targets[@]}" || { echo "0 passed, ${#targets[@]} failed"; exit 1; }

# One target: its result lines go to $RES/<target> (printed in target order at the end).
RES="$(mktemp -d /tmp/qnn-fuzz-res.XXXXXX)"
trap 'rm -rf "$RES"' EXIT
run_one() {
  local t="$1" out work rc start took execs cov corp art why opts
  out="$FOUT/$t"
  mkdir -p "$out"
  work=$(mktemp -d "/tmp/qnn-$t.XXXXXX")
  [ -d "tests/fuzz/corpus/$t" ] && cp -r "tests/fuzz/corpus/$t/." "$work/"
  opts=(-max_total_time="$SECS" -timeout=2 -rss_limit_mb=2048 -artifact_prefix="$out/" -print_final_stats=1)
  [ -f "tests/fuzz/$t.dict" ] && opts+=(-dict="tests/fuzz/$t.dict")
  start=$SECONDS
  "$B/tests/fuzz/$t" "${opts[@]}" "$work" >"$out/log.txt" 2>&1; rc=$?
  took=$((SECONDS - start))
  execs=$(grep -E '^stat::number_of_executed_units' "$out/log.txt" | awk '{print $2}')
  cov=$(grep -oE 'cov: [0-9]+' "$out/log.txt" | tail -n 1)
  corp=$(grep -oE 'corp: [0-9]+/[0-9]+[A-Za-z]*' "$out/log.txt" | tail -n 1)
  rm -rf "$work"
  if [ "$rc" -eq 0 ]; then
    echo "fuzz: $t PASS (${took} s, ${execs:-?} inputs, ${cov:-cov: ?}, ${corp:-corp: ?})" >"$RES/$t"
  else
    art=$(grep -oE "Test unit written to [^ ]+" "$out/log.txt" | head -n 1 | sed 's/Test unit written to //')
    why=$(grep -m1 -E 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error:|FUZZ_CHECK failed|terminate called|SUMMARY' "$out/log.txt")
    { echo "fuzz: $t FAIL (${took} s, exit $rc): ${why:-see $out/log.txt}"
      echo "      input: ${art:-none saved}; log: $out/log.txt; again: scripts/fuzz.sh repro $t ${art:-FILE}"; } >"$RES/$t"
  fi
}

for t in "${targets[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n; done
  run_one "$t" &
done
wait
passed=0; failed=0
for t in "${targets[@]}"; do
  if [ -f "$RES/$t" ]; then cat "$RES/$t"; else echo "fuzz: $t FAIL (no result)" ; fi
  if grep -q "^fuzz: $t PASS" "$RES/$t" 2>/dev/null; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
