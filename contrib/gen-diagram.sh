#!/bin/sh
# gen-diagram.sh [--check]: regenerate doc/architecture.svg from its source, doc/architecture.dot, with Graphviz's
# `dot` (Debian package graphviz, installed by contrib/setup.sh). Both files are in the tree: edit the .dot, run
# this, and commit the two together.
#
# --check writes nothing: it exits 1 when the committed SVG differs from what this machine's `dot` makes of the
# source (other Graphviz versions lay out differently, so check with the version that made the committed file:
# its first comment names it).
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
src=$top/doc/architecture.dot
out=$top/doc/architecture.svg
command -v dot >/dev/null 2>&1 || {
	echo "gen-diagram.sh: Graphviz's dot is not installed (apt-get install graphviz)" >&2
	exit 2
}
tmp=$(mktemp "${TMPDIR:-/tmp}/architecture.XXXXXX")
trap 'rm -f "$tmp"' EXIT
dot -Tsvg "$src" -o "$tmp"
case ${1:-} in
--check)
	if cmp -s "$tmp" "$out"; then
		echo "gen-diagram.sh: doc/architecture.svg is up to date"
	else
		echo "gen-diagram.sh: doc/architecture.svg differs from doc/architecture.dot rendered by $(dot -V 2>&1)" >&2
		exit 1
	fi
	;;
'')
	mv "$tmp" "$out"
	chmod 644 "$out"
	echo "gen-diagram.sh: wrote doc/architecture.svg"
	;;
*)
	echo "usage: gen-diagram.sh [--check]" >&2
	exit 2
	;;
esac
