#!/usr/bin/env bash
# fuzz.sh: build the libFuzzer targets with clang (ASan + UBSan) in build-fuzz/ and run each for a while.
#
#   contrib/fuzz.sh [--seconds N] [--grow] [TARGET...]     (targets: env v1 json grpc h2server gateway drain bindings; default all)
#
# Each target starts from its seed corpus in fuzz/corpus/TARGET. Without --grow, new inputs go to a scratch
# directory; with --grow they are merged back into fuzz/corpus/TARGET (minimised), so the corpus grows in the tree.
# Prints one line per target: executions, corpus size, and findings (crash files are kept in build-fuzz/).
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
seconds=60
grow=0
targets=()
while [ $# -gt 0 ]; do
  case $1 in
    --seconds) seconds=$2; shift 2 ;;
    --grow) grow=1; shift ;;
    -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) targets+=("$1"); shift ;;
  esac
done
[ ${#targets[@]} -gt 0 ] || targets=(env v1 json grpc h2server gateway drain bindings)

[ -x configure ] || contrib/setup.sh --no-build
mkdir -p build-fuzz
if [ ! -f build-fuzz/config.status ] || [ configure -nt build-fuzz/config.status ]; then
  (cd build-fuzz && CC=clang ../configure --enable-fuzzing >configure.out 2>&1) ||
    { tail -n 20 build-fuzz/configure.out >&2; exit 1; }
fi
make -C build-fuzz -s -j"$(nproc)" $(printf 'fuzz/%s-fuzzer ' "${targets[@]}") >/dev/null

rc=0
for t in "${targets[@]}"; do
  work=build-fuzz/run-$t
  rm -rf "$work"; mkdir -p "$work/corpus" "$work/artifacts"
  log=$work/fuzz.log
  if ! (cd "$work" && ASAN_OPTIONS=detect_leaks=1 ../fuzz/"$t"-fuzzer -max_total_time="$seconds" -max_len=65536 \
      -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix=artifacts/ corpus "$top/fuzz/corpus/$t" >fuzz.log 2>&1); then
    rc=1
  fi
  execs=$(sed -n 's/.*stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$log" | tail -n 1)
  [ -n "$execs" ] || execs=$(grep -Eo '#[0-9]+' "$log" | tail -n 1 | tr -d '#')
  findings=$(find "$work/artifacts" -type f | wc -l)
  echo "fuzz: $t: ${execs:-0} executions in ${seconds}s, $(find "$work/corpus" -type f | wc -l) new inputs, $findings findings"
  if [ "$findings" -gt 0 ]; then
    rc=1
    grep -m 5 -E 'ERROR|SUMMARY' "$log" | sed "s/^/fuzz: $t: /"
  fi
  if [ $grow -eq 1 ] && [ "$findings" -eq 0 ]; then
    (cd "$work" && ../fuzz/"$t"-fuzzer -merge=1 "$top/fuzz/corpus/$t" corpus >merge.log 2>&1)
  fi
done
exit $rc
