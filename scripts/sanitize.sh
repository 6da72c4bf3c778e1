#!/usr/bin/env bash
# scripts/sanitize.sh [BUILD_DIR] — build every test with AddressSanitizer +
# UndefinedBehaviorSanitizer and run the whole suite; fails on any failed test
# and on any sanitizer report. Last line, as scripts/test.sh: "N passed, N failed".
#
#   scripts/sanitize.sh              # build dir build-asan (separate from build/)
#   QNN_SAN_TESTS="test_core test_data" scripts/sanitize.sh   # only these executables
#   QNN_SAN_SKIP="" scripts/sanitize.sh   # also the long trainings (see below)
#
# Why these flags:
#   -Db_sanitize=address,undefined   ASan (out-of-bounds, use-after-free, leaks via
#                                    LSan) and UBSan (overflow, bad shifts, misaligned
#                                    loads, invalid enum/bool values, ...).
#   -Db_lundef=false                 meson's -Wl,--no-undefined breaks sanitizer links.
#   -fno-sanitize-recover=all        UBSan aborts at the first report instead of
#                                    printing and carrying on, so a report fails the test.
#   -fno-omit-frame-pointer          usable stack traces without debug info.
#   -O1 -g1                          the suite's speed at a third of -O2 -g's build
#                                    time (CI builds this from scratch); -g1 keeps
#                                    line numbers in reports; asserts stay on
#                                    (b_ndebug=if-release, and this is not release).
# Only the test executables are built (and the apps test_cli, test_dist,
# test_install and test_walkthrough run: their link_depends pull them in).
#
# Skipped by default (QNN_SAN_SKIP, a doctest -tce filter; "" skips nothing): the
# test cases that train for minutes under ASan — the MNIST end-to-end trainings
# (test_e2e) and the mpirun runs of whole trainings (test_dist). Their code paths
# (layers, kernels, optimisers, loaders, the MPI reduction) are run by the
# smaller tests of the same suite; the normal build runs them all (scripts/test.sh).
# Known third-party noise is suppressed in scripts/lsan.supp and scripts/ubsan.supp
# (they name only OpenBLAS / libgomp / libc frames — never qnn code; see there).
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
B="${1:-build-asan}"

SKIP="${QNN_SAN_SKIP-e2e: *MNIST*,dist: mpirun*}"

if [ ! -f "$B/build.ninja" ]; then
  meson setup "$B" -Doptimization=1 -Ddebug=false \
    -Db_sanitize=address,undefined -Db_lundef=false \
    -Dcpp_args="-g1 -fno-sanitize-recover=all -fno-omit-frame-pointer" \
    -Dcpp_link_args="-fno-sanitize-recover=all" >/dev/null \
    || { echo "sanitize: meson setup $B failed"; echo "0 passed, 1 failed"; exit 1; }
fi
# Every test executable (the apps they run come with them); with
# QNN_SAN_TESTS only those tests.
targets=()
if [ -n "${QNN_SAN_TESTS:-}" ]; then
  for n in $QNN_SAN_TESTS; do targets+=("tests/$n"); done
else
  mapfile -t targets < <(ninja -C "$B" -t targets all | grep -oE '^tests/test_[a-z0-9_]+(:| )' | tr -d ': ' | sort -u)
fi
ninja -C "$B" "${targets[@]}" || { echo "sanitize: build failed"; echo "0 passed, 1 failed"; exit 1; }

# halt_on_error / abort: a report ends the process with a non-zero status; the
# log files let us also catch reports from child processes (the apps test_cli
# runs) whose exit status a test might tolerate.
LOGDIR="$(mktemp -d /tmp/qnn-sanitize.XXXXXX)"
trap 'rm -rf "$LOGDIR"' EXIT
export ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:abort_on_error=0:check_initialization_order=1:log_path=$LOGDIR/asan"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:suppressions=$ROOT/scripts/ubsan.supp:log_path=$LOGDIR/ubsan"
export LSAN_OPTIONS="suppressions=$ROOT/scripts/lsan.supp:print_suppressions=0"
# OpenBLAS's own threads are not used (the OpenMP build shares libgomp's pool).
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"

passed=0; failed=0; status=0
tests=()
if [ -n "${QNN_SAN_TESTS:-}" ]; then
  for n in $QNN_SAN_TESTS; do tests+=("$B/tests/$n"); done
else
  tests=("$B"/tests/test_*)
fi
for t in "${tests[@]}"; do
  [ -f "$t" ] && [ -x "$t" ] || continue
  name=$(basename "$t")
  echo "=== $name"
  start=$SECONDS
  # Open MPI (test_dist) dlcloses its plugins at MPI_Finalize, so their
  # allocations' stacks end in "<unknown module>" after one frame; a full
  # (slow) unwind reaches the libmpi frames scripts/lsan.supp names.
  extra=""
  case "$name" in test_dist*) extra=":fast_unwind_on_malloc=0" ;; esac
  filter=()
  [ -z "$SKIP" ] || filter=("-tce=$SKIP")
  out=$(ASAN_OPTIONS="$ASAN_OPTIONS$extra" "$t" "${filter[@]}" 2>&1); rc=$?
  echo "$out" | tail -n 40
  # Reports of this test (and of the processes it started) are in the log files.
  reports=$(cat "$LOGDIR"/asan.* "$LOGDIR"/ubsan.* 2>/dev/null)
  rm -f "$LOGDIR"/asan.* "$LOGDIR"/ubsan.*
  echo "($name: $((SECONDS - start)) s)"
  if [ -n "$reports" ]; then
    echo "sanitize: $name: sanitizer report:"
    echo "$reports" | head -n 80
    failed=$((failed + 1)); status=1; continue
  fi
  line=$(echo "$out" | grep -E '^\[doctest\] test cases:' | tail -n 1)
  if [ -z "$line" ]; then
    echo "sanitize: $name did not report (exit $rc)"; failed=$((failed + 1)); status=1; continue
  fi
  p=$(echo "$line" | sed -E 's/.*\| *([0-9]+) passed.*/\1/')
  f=$(echo "$line" | sed -E 's/.*\| *([0-9]+) failed.*/\1/')
  passed=$((passed + p)); failed=$((failed + f))
  [ "$rc" -eq 0 ] || status=1
done
echo "$passed passed, $failed failed"
exit $status
