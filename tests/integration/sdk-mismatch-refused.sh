#!/usr/bin/env bash
# shellcheck disable=SC2119,SC2317 # lgr_init takes no script arguments; checks run through lgr_wait_for
# sdk-mismatch-refused.sh: build-aux/rsyslog-sdk-check accepts the real SDK with the installed rsyslogd and refuses
# every mismatch that would make modules load but corrupt messages.
#
# Oracle: exit 0 for the real pair; exit 1 and a message naming what differs for a rsyslogd of another version,
# a debug build (FEATURE_DEBUG Yes), one without 64-bit atomics, and for SDK headers whose config.h lacks NDEBUG.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
lgr_init --no-modules

check=$LGR_TOP_SRCDIR/build-aux/rsyslog-sdk-check
if [ -z "${LGR_RSYSLOG_SDK:-}" ] || [ ! -f "$LGR_RSYSLOG_SDK/config.h" ]; then
	lgr_skip "LGR_RSYSLOG_SDK does not name a configured rsyslog source (${LGR_RSYSLOG_SDK:-unset})"
fi
cc=${CC:-cc}

# expect RC NAME EXPECTED SDK RSYSLOGD: the check must exit RC and, for a mismatch, name EXPECTED.
expect() {
	local want_rc=$1 name=$2 want=$3 sdk=$4 daemon=$5 out rc
	out=$(sh "$check" "$sdk" "$daemon" "$cc" 2>&1)
	rc=$?
	[ "$rc" -eq "$want_rc" ] || { printf '%s\n' "$out" >&2; lgr_fail "$name: exit $rc, expected $want_rc"; }
	case $out in
	*"$want"*) ;;
	*) printf '%s\n' "$out" >&2; lgr_fail "$name: output lacks: $want" ;;
	esac
}

# fake NAME SED: a script that prints the real `rsyslogd -v` edited by SED.
fake() {
	local f=$LGR_WORK/$1
	"$RSYSLOGD" -v >"$LGR_WORK/real-v.txt" 2>&1 || lgr_fail "$RSYSLOGD -v failed"
	sed -e "$2" "$LGR_WORK/real-v.txt" >"$f.txt"
	cmp -s "$LGR_WORK/real-v.txt" "$f.txt" && lgr_fail "fake $1: the edit '$2' changed nothing in rsyslogd -v"
	printf '#!/bin/sh\ncat "%s"\n' "$f.txt" >"$f"
	chmod +x "$f"
}

version=$(sed -n 's/^#define VERSION "\(.*\)"$/\1/p' "$LGR_RSYSLOG_SDK/config.h")

lgr_check "the real SDK ($version) matches $RSYSLOGD"
expect 0 real "headers match" "$LGR_RSYSLOG_SDK" "$RSYSLOGD"

lgr_check "a rsyslogd of another version is refused"
fake other-version "1s/^rsyslogd[[:space:]]*[0-9][0-9.]*/rsyslogd  8.2402.0/"
expect 1 other-version "version: the headers in $LGR_RSYSLOG_SDK say $version, $LGR_WORK/other-version says 8.2402.0" \
	"$LGR_RSYSLOG_SDK" "$LGR_WORK/other-version"

lgr_check "a debug build of rsyslogd (FEATURE_DEBUG Yes) is refused"
fake debug-build 's/\(FEATURE_DEBUG (debug build, slow code):[[:space:]]*\)No/\1Yes/'
expect 1 debug-build "NDEBUG (non-debug build): the headers in $LGR_RSYSLOG_SDK say 1, $LGR_WORK/debug-build says 0" \
	"$LGR_RSYSLOG_SDK" "$LGR_WORK/debug-build"

lgr_check "a rsyslogd without 64-bit atomics is refused"
fake no-atomic64 's/\(64bit Atomic operations supported:[[:space:]]*\)Yes/\1No/'
expect 1 no-atomic64 "HAVE_ATOMIC_BUILTINS64: the headers in $LGR_RSYSLOG_SDK say 1, $LGR_WORK/no-atomic64 says 0" \
	"$LGR_RSYSLOG_SDK" "$LGR_WORK/no-atomic64"

lgr_check "SDK headers configured without NDEBUG are refused"
sdk=$LGR_WORK/sdk-debug
mkdir -p "$sdk"
for entry in "$LGR_RSYSLOG_SDK"/*; do
	[ "${entry##*/}" = config.h ] || ln -s "$entry" "$sdk/${entry##*/}"
done
grep -q '^#define NDEBUG' "$LGR_RSYSLOG_SDK/config.h" || lgr_fail "the real SDK's config.h does not define NDEBUG"
sed '/^#define NDEBUG/d' "$LGR_RSYSLOG_SDK/config.h" >"$sdk/config.h"
expect 1 sdk-without-ndebug "NDEBUG (non-debug build): the headers in $sdk say 0, $RSYSLOGD says 1" "$sdk" "$RSYSLOGD"
lgr_pass
