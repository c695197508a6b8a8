#!/usr/bin/env bash
# setup.sh: prepare a Debian 12 machine to build, test and run the project, then configure and build it.
#
#   contrib/setup.sh [--no-build]
#
# Steps, each skipped when already done (a second run changes nothing):
#   1. install the Debian packages the build, tests and benchmarks need (as root, or through sudo);
#   2. obtain the rsyslog source matching the installed rsyslogd and configure it for its headers (the SDK);
#   3. generate ./configure, configure the project in build/ against that SDK, and build it there.
#
# Environment: LGR_SDK_DIR overrides where the SDK is kept (default ~/.cache/rsyslog-loggregator/sdk),
# CONFIGURE_FLAGS adds flags to ./configure, MAKEFLAGS is honoured by make.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
build=1
for arg in "$@"; do
  case $arg in
    --no-build) build=0 ;;
    -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "setup.sh: unknown argument $arg" >&2; exit 2 ;;
  esac
done

say() { printf 'setup: %s\n' "$*"; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

packages=(
  build-essential autoconf automake libtool pkg-config dpkg-dev
  protobuf-c-compiler libprotobuf-c-dev libnghttp2-dev libssl-dev libcurl4-openssl-dev
  libjson-c-dev libevent-dev libcriterion-dev libhttp-parser-dev
  rsyslog rsyslog-openssl libestr-dev libfastjson-dev zlib1g-dev uuid-dev
  clang libclang-rt-14-dev valgrind clang-format
  openssl curl python3 ca-certificates
  graphviz  # contrib/gen-diagram.sh draws doc/architecture.svg
)

# 1. Debian packages.
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
# Node.js (for the independent gRPC peers of the tests) may come from elsewhere with npm bundled: only a machine
# without node gets Debian's packages.
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # The package's own rsyslogd would otherwise keep running as the system logger; the project starts its own.
  if command -v systemctl >/dev/null && systemctl is-active -q rsyslog 2>/dev/null; then
    as_root systemctl disable --now rsyslog >/dev/null 2>&1 || true
  fi
fi

# 2. The rsyslog SDK: the source package of the installed rsyslogd, configured for its headers.
installed=$(dpkg-query -W -f='${Version}' rsyslog)
upstream=${installed%-*}
upstream=${upstream#*:}
sdk_root=${LGR_SDK_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/rsyslog-loggregator/sdk}
sdk=$sdk_root/rsyslog-$upstream
if [ ! -f "$sdk/.configured" ]; then
  src_list=/etc/apt/sources.list.d/debian-src.sources
  if ! grep -rqs '^Types:.*deb-src' /etc/apt/sources.list.d/ && ! grep -qs '^deb-src' /etc/apt/sources.list; then
    say "adding deb-src entries"
    sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources | as_root tee "$src_list" >/dev/null
    as_root apt-get update -qq
  fi
  # Prefer the exact source version; Debian may publish a security update's binaries without its source, so fall
  # back to the newest source of the same upstream version (Debian revisions keep struct layouts).
  mapfile -t versions < <(apt-cache showsrc rsyslog | awk '/^Version:/ {print $2}' | sort -u)
  pick=""
  for v in "${versions[@]}"; do [ "$v" = "$installed" ] && pick=$v; done
  if [ -z "$pick" ]; then
    for v in "${versions[@]}"; do
      vu=${v%-*}; vu=${vu#*:}
      [ "$vu" = "$upstream" ] && pick=$v
    done
  fi
  [ -n "$pick" ] || { echo "setup: no rsyslog source for upstream version $upstream in apt (have: ${versions[*]})" >&2; exit 1; }
  say "fetching the rsyslog $upstream source for rsyslogd $installed"
  rm -rf "$sdk" "$sdk_root/dl"
  mkdir -p "$sdk_root/dl"
  dl_ok=0
  for attempt in "$pick" "${versions[@]}"; do
    vu=${attempt%-*}; vu=${vu#*:}
    [ "$vu" = "$upstream" ] || continue
    if (cd "$sdk_root/dl" && apt-get source -qq --download-only "rsyslog=$attempt" >/dev/null 2>&1); then
      say "using the source of rsyslog $attempt"
      dl_ok=1; break
    fi
  done
  [ $dl_ok -eq 1 ] || { echo "setup: could not download the rsyslog $upstream source package" >&2; exit 1; }
  (cd "$sdk_root/dl" && dpkg-source -x --no-check ./*.dsc "$sdk" >/dev/null)
  say "configuring the rsyslog headers in $sdk"
  (cd "$sdk" && ./configure --prefix=/usr --libdir=/usr/lib/x86_64-linux-gnu --disable-libgcrypt \
    --disable-fmhttp --disable-liblogging-stdlog --disable-generate-man-pages >configure.out 2>&1) || {
    tail -n 20 "$sdk/configure.out" >&2; echo "setup: configuring the rsyslog source failed" >&2; exit 1; }
  rm -rf "$sdk_root/dl"
  touch "$sdk/.configured"
fi

# The independent gRPC peer of the interop tests (@grpc/grpc-js from npm), pinned by its package-lock.json.
peer=$top/tests/tools/grpc-peer
if [ ! -d "$peer/node_modules/@grpc/grpc-js" ] || [ "$peer/package-lock.json" -nt "$peer/node_modules" ]; then
  say "installing the grpc-js test peer"
  (cd "$peer" && npm ci --no-audit --no-fund >/dev/null 2>&1) || { echo "setup: npm ci in $peer failed" >&2; exit 1; }
fi

# 3. The project itself, built out of tree in build/ (sanitizer and fuzzing builds sit beside it).
cd "$top"
if [ ! -x configure ] || [ configure.ac -nt configure ] || [ Makefile.am -nt configure ]; then
  say "generating ./configure"
  autoreconf -fi >autoreconf.log 2>&1 || { cat autoreconf.log >&2; exit 1; }
  rm -f autoreconf.log
fi
wanted="--with-rsyslog-sdk=$sdk --enable-werror ${CONFIGURE_FLAGS:-}"
mkdir -p build
if [ ! -f build/config.status ] || [ "$(cat build/.setup-flags 2>/dev/null)" != "$wanted" ] || [ configure -nt build/config.status ]; then
  say "configuring the project in build/"
  # shellcheck disable=SC2086
  (cd build && ../configure $wanted >configure.out 2>&1) || { tail -n 30 build/configure.out >&2; exit 1; }
  printf '%s' "$wanted" >build/.setup-flags
fi
if [ $build -eq 1 ]; then
  say "building in build/"
  make -C build -s -j"$(nproc)" >/dev/null
  say "modules: $(find build/modules -name '*.so' -path '*/.libs/*' | sort | tr '\n' ' ')"
fi
