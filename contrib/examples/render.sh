#!/bin/sh
# render.sh MODDIR PKI DATADIR < example.conf > rsyslog.conf
#
# Replaces the placeholders of the example configurations: @MODDIR@ (directory holding imloggregator.so,
# omdoppler.so, omfirehose.so), @PKI@ (PEM files and the gateway token file) and @DATADIR@ (drain bindings).
# Paths must not contain '|'.
[ $# -eq 3 ] || { echo "usage: render.sh MODDIR PKI DATADIR < example.conf > rsyslog.conf" >&2; exit 2; }
exec sed -e "s|@MODDIR@|$1|g" -e "s|@PKI@|$2|g" -e "s|@DATADIR@|$3|g"
