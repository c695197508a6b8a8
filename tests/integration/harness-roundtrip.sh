#!/usr/bin/env bash
# shellcheck disable=SC2119,SC2317 # lgr_init takes no script arguments; checks run through lgr_wait_for
# harness-roundtrip.sh: a private rsyslogd with all three modules starts, takes lines over imtcp, hands each to an
# omfirehose action and an omfile action, and stops cleanly on SIGTERM.
#
# Oracle: every line sent appears once in the omfile output; impstats reports omfirehose ingress equal to the
# number of lines sent; rsyslogd exits 0 after SIGTERM within the timeout (and, with LGR_VALGRIND=1, valgrind
# reports no errors and no definite leaks).
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
lgr_init

n=25
run=$$-$RANDOM
conf=$LGR_WORK/rsyslog.conf
lgr_conf_write "$conf" <<EOF
module(load="imtcp")
module(load="impstats" interval="1" log.syslog="off" log.file="$LGR_WORK/stats.log" format="legacy")
module(load="$(lgr_module imloggregator)")
module(load="$(lgr_module omdoppler)")
module(load="$(lgr_module omfirehose)")
template(name="msgonly" type="string" string="%msg%\n")
input(type="imloggregator" address="127.0.0.1" port="0" tls="off")
input(type="imtcp" address="127.0.0.1" port="0" listenPortFileName="$LGR_WORK/tcp.port" ruleset="main")
ruleset(name="main") {
	action(type="omfirehose" address="127.0.0.1" port="0" tls="off")
	action(type="omfile" file="$LGR_WORK/out.log" template="msgonly")
}
EOF

lgr_check "rsyslogd starts with imloggregator, omdoppler, omfirehose and imtcp on 127.0.0.1 port 0"
lgr_start "$conf"
lgr_wait_port "$LGR_WORK/tcp.port"
lgr_say "imtcp listens on 127.0.0.1:$LGR_PORT"

lgr_check "$n lines sent over TCP all reach the omfile output"
lines=()
for i in $(seq 1 "$n"); do
	lines+=("<13>Nov 20 10:00:00 testhost roundtrip: line $run-$i")
done
lgr_send_tcp "$LGR_PORT" "${lines[@]}"
out_has_all() { [ "$(lgr_count "$LGR_WORK/out.log" "line $run-[0-9]+\$")" -ge "$n" ]; }
lgr_wait_for "$n lines in out.log" out_has_all
for i in $(seq 1 "$n"); do
	c=$(lgr_count "$LGR_WORK/out.log" "line $run-$i\$")
	[ "$c" -eq 1 ] || lgr_fail "line $i appears $c times in out.log"
done

lgr_check "impstats reports omfirehose ingress=$n"
stats_ingress() {
	grep -E 'omfirehose\(127\.0\.0\.1:0\): origin=omfirehose ' "$LGR_WORK/stats.log" 2>/dev/null | tail -n 1 |
		sed -n 's/.* ingress=\([0-9]*\).*/\1/p'
}
ingress_is_n() { [ "$(stats_ingress)" = "$n" ]; }
lgr_wait_for "omfirehose ingress=$n in stats.log" ingress_is_n
for ctr in egress dropped.egress subscriptions slow_consumer; do
	grep -E "origin=omfirehose .*\\b$ctr=0\\b" "$LGR_WORK/stats.log" >/dev/null ||
		lgr_fail "omfirehose counter $ctr missing from impstats"
done
grep -E 'imloggregator\(grpc/127\.0\.0\.1:0\): origin=imloggregator ingress=0 dropped\.ingress=0 invalid=0' \
	"$LGR_WORK/stats.log" >/dev/null || lgr_fail "imloggregator counters missing from impstats"

lgr_check "rsyslogd stops cleanly on SIGTERM$([ "$LGR_VALGRIND" = 1 ] && echo ', valgrind clean')"
lgr_stop
if grep -E 'imloggregator|omfirehose|omdoppler' "$LGR_WORK/internal.log" 2>/dev/null | grep -Eiv 'tls="off"'; then
	lgr_fail "the modules logged unexpected messages"
fi
lgr_pass
