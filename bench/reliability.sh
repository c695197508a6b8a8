#!/usr/bin/env bash
# reliability.sh: the long versions of the reliability suite (tests/integration/reliability-*.sh): every scenario
# with LGR_REL_SCALE times the load and duration of the short versions that `make check` runs, each run --repeat
# times, then a table of the outcomes and of the figures each run measured (doc/reliability.md explains them).
#
#   bench/reliability.sh [--scale N] [--repeat N] [--only NAME[,NAME...]] [--valgrind] [--keep]
#
#   --scale N    load and duration factor (default 5): conservation sends for 8 x N seconds, restart and reset
#                wait for N times as many envelopes in each phase (restart: 3 x N SIGHUPs), reset's subscriber phase
#                sends 3000 x N envelopes, latency takes 5 x N runs of each kind; tls is a matrix and does not scale
#   --repeat N   runs of each scenario (default 1)
#   --only LIST  scenarios to run: conservation, restart, reset, latency, tls (default all)
#   --valgrind   run the daemons under valgrind (LGR_VALGRIND=1; slow: use a small --scale)
#   --keep       keep the work dirs of the runs (LGR_KEEP=1)
#
# Environment: LGR_BUILD (build tree, default <src>/build), RSYSLOGD. Exit status 0 when every run passed, 1
# otherwise. The logs of each run are in bench-results/reliability/NAME-I.log (bench-results/ under the source
# tree), the figures in bench-results/reliability/figures.txt.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
src=$(dirname "$here")
build=${LGR_BUILD:-$src/build}
scale=5
repeat=1
only=conservation,restart,reset,latency,tls
valgrind=0
keep=0
while [ $# -gt 0 ]; do
	case $1 in
	--scale) scale=$2; shift 2 ;;
	--repeat) repeat=$2; shift 2 ;;
	--only) only=$2; shift 2 ;;
	--valgrind) valgrind=1; shift ;;
	--keep) keep=1; shift ;;
	-h | --help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) echo "reliability.sh: unknown option $1" >&2; exit 2 ;;
	esac
done
out=$src/bench-results/reliability
mkdir -p "$out"
figures=$out/figures.txt
: >"$figures"
rows=()
failed=0
for name in ${only//,/ }; do
	script=$src/tests/integration/reliability-$name.sh
	[ -f "$script" ] || { echo "reliability.sh: no scenario $name ($script)" >&2; exit 2; }
	for i in $(seq 1 "$repeat"); do
		log=$out/$name-$i.log
		printf 'reliability.sh: %s, run %s of %s, scale %s ... ' "$name" "$i" "$repeat" "$scale" >&2
		start=$SECONDS
		LGR_TOP_SRCDIR=$src LGR_TOP_BUILDDIR=$build LGR_REL_SCALE=$scale LGR_REL_FIGURES=$figures \
			LGR_VALGRIND=$valgrind LGR_KEEP=$keep LGR_TIMEOUT=$((30 * scale)) bash "$script" >"$log" 2>&1
		rc=$?
		secs=$((SECONDS - start))
		case $rc in
		0) result=pass ;;
		77) result=skip ;;
		*) result=FAIL; failed=1 ;;
		esac
		echo "$result (${secs} s)" >&2
		fig=$(grep "^reliability-$name " "$figures" | tail -n 1 | cut -d' ' -f2-)
		[ "$result" = pass ] || fig="$(grep -m1 'FAIL' "$log" | cut -c1-160)"
		rows+=("$(printf '| %s | %s | %s | %s | %s |' "$name" "$i" "$result" "$secs" "$fig")")
	done
done
printf '\nscale %s, %s run(s) each, valgrind %s, %s\n\n' "$scale" "$repeat" "$valgrind" "$(date -u '+%Y-%m-%d %H:%M UTC')"
printf '| scenario | run | result | seconds | figures |\n|---|---|---|---|---|\n'
printf '%s\n' "${rows[@]}"
exit "$failed"
