#!/usr/bin/env bash
# test.sh: set up the machine (contrib/setup.sh) and run every test the project has, as CI does.
#
#   contrib/test.sh [--quick]
#
#   1. build/        the normal build (warnings are errors): unit tests, fuzz-corpus replays and the integration
#                    tests with Debian's rsyslogd (make check);
#   2. build/        the integration tests again with rsyslogd under valgrind (LGR_VALGRIND=1);
#   3. build-asan/   unit tests and fuzz replays built with AddressSanitizer + UBSan;
#   4. build-fuzz/   the libFuzzer targets built with clang, each run briefly over its corpus (contrib/fuzz.sh);
#   5. clang-format: every C file is formatted.
# --quick runs step 1 only. Ends with one line "N passed, N failed" over every test program and script.
set -uo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
quick=0
[ "${1:-}" = "--quick" ] && quick=1
jobs=$(nproc)
passed=0
failed=0
failures=()

# Interop tests fail, rather than skip, when their independent peers are missing.
export LGR_REQUIRE_PEERS=1
contrib/setup.sh || { echo "test: setup failed"; echo "0 passed, 1 failed"; exit 1; }

# tally DIR STEP: add the results of DIR/test-suite.log (automake's summary) to the totals.
tally() {
  local dir=$1 step=$2 p f
  p=$(sed -n 's/^# PASS: *\([0-9]*\)/\1/p' "$dir/test-suite.log" 2>/dev/null | head -n 1)
  f=$(awk '/^# (FAIL|ERROR|XPASS): / {n += $3} END {print n + 0}' "$dir/test-suite.log" 2>/dev/null)
  p=${p:-0}; f=${f:-0}
  passed=$((passed + p)); failed=$((failed + f))
  echo "test: $step: $p passed, $f failed"
  [ "$f" -eq 0 ] || failures+=("$step")
}

# run_check DIR STEP [make args...]: make check in DIR, then tally; a make failure without a test-suite.log counts
# as one failure (the build broke).
run_check() {
  local dir=$1 step=$2 t log; shift 2
  rm -f "$dir/test-suite.log"
  if ! make -C "$dir" -s -j"$jobs" check "$@" >"$dir/check.out" 2>&1; then
    grep -E '^(FAIL|ERROR|XPASS):' "$dir/check.out" | sed 's/^/test:   /'
    # The end of each failing test's own log, so that a CI record says why.
    grep -E '^(FAIL|ERROR|XPASS):' "$dir/check.out" | sed 's/^[A-Z]*: *//' | while read -r t; do
      log=$dir/${t%.sh}.log # automake drops the .sh of a script's name
      [ -f "$log" ] || log=$dir/$t.log
      [ -f "$log" ] || continue
      echo "test:   --- the end of $log"
      tail -n 25 "$log" | cut -c1-300 | sed 's/^/test:   | /'
    done
    if [ ! -f "$dir/test-suite.log" ]; then
      tail -n 40 "$dir/check.out"
      failed=$((failed + 1)); failures+=("$step (build)")
      echo "test: $step: the build failed"
      return
    fi
  fi
  tally "$dir" "$step"
}

echo "test: step 1: unit, fuzz replay and integration tests (build/)"
run_check build "build"

if [ $quick -eq 0 ]; then
  echo "test: step 2: integration tests with rsyslogd under valgrind (build/)"
  itests=$(make -C build -s print-integration-tests 2>/dev/null)
  run_check build "valgrind" LGR_VALGRIND=1 TESTS="$itests"

  echo "test: step 3: unit tests and fuzz replays under ASan + UBSan (build-asan/)"
  mkdir -p build-asan
  if [ ! -f build-asan/config.status ] || [ configure -nt build-asan/config.status ]; then
    (cd build-asan && ../configure --enable-sanitizers --enable-werror >configure.out 2>&1) ||
      { tail -n 20 build-asan/configure.out; failed=$((failed + 1)); failures+=("asan (configure)"); }
  fi
  [ -f build-asan/Makefile ] && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
    LSAN_OPTIONS=suppressions="$top/tests/unit/lsan.supp" run_check build-asan "asan+ubsan"

  echo "test: step 4: libFuzzer targets (build-fuzz/)"
  if contrib/fuzz.sh --seconds "${LGR_FUZZ_SECONDS:-10}" >build/fuzz.out 2>&1; then
    passed=$((passed + 1))
    sed -n 's/^fuzz: /test:   /p' build/fuzz.out
  else
    tail -n 30 build/fuzz.out
    failed=$((failed + 1)); failures+=("fuzz")
  fi

  echo "test: step 5: formatting"
  if make -C build -s check-format >build/format.out 2>&1; then
    passed=$((passed + 1))
  else
    head -n 20 build/format.out
    failed=$((failed + 1)); failures+=("format")
  fi
fi

[ ${#failures[@]} -eq 0 ] || echo "test: failed: ${failures[*]}"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
