#!/usr/bin/env bash
# run.sh: set up and build (contrib/setup.sh), then check the example configuration of each role against the
# installed rsyslogd with `rsyslogd -N1`, using a generated test PKI.
#
#   contrib/run.sh
#
# The example configurations are the ones shipped in contrib/examples/, rendered by contrib/examples/render.sh
# with the built modules, a test PKI (contrib/gen-pki.sh) and a data directory; the results are left in build/run/.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
contrib/setup.sh

run=$top/build/run
mkdir -p "$run/moddir" "$run/data"
contrib/gen-pki.sh "$run/pki"
[ -f "$run/pki/gateway.tokens" ] || printf 'demo-admin-token admin\n' >"$run/pki/gateway.tokens"
for m in imloggregator omdoppler omfirehose; do
  ln -sf "$top/build/modules/$m/.libs/$m.so" "$run/moddir/$m.so"
done
rsyslogd=${RSYSLOGD:-/usr/sbin/rsyslogd}
rc=0
for example in contrib/examples/*.conf; do
  name=$(basename "$example" .conf)
  conf=$run/$name.conf
  contrib/examples/render.sh "$run/moddir" "$run/pki" "$run/data" <"$example" >"$conf"
  if "$rsyslogd" -N1 -f "$conf" >"$run/$name.validate.log" 2>&1; then
    echo "run: $name: $conf is valid for $("$rsyslogd" -v | head -n 1 | awk '{print $1, $2}')"
  else
    echo "run: $name: rsyslogd -N1 rejected $conf:"
    sed 's/^/run:   /' "$run/$name.validate.log"
    rc=1
  fi
done
echo "run: modules in $run/moddir:"
for m in imloggregator omdoppler omfirehose; do echo "run:   $(readlink -f "$run/moddir/$m.so")"; done
exit $rc
