#!/usr/bin/env bash
# Builds `strait` as one static x86_64-unknown-linux-musl binary (Debian's musl-tools compile the
# C parts: zstd, ring), strips it, and checks that it is static. Prints its path and size.
# Usage: scripts/build-static.sh            -> target/x86_64-unknown-linux-musl/release/strait
set -euo pipefail
cd "$(dirname "$0")/.."
target=x86_64-unknown-linux-musl
if ! command -v musl-gcc >/dev/null 2>&1; then
  echo "build-static: installing musl-tools"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends musl-tools
fi
rustup target list --installed | grep -qx "$target" || rustup target add "$target"
CC_x86_64_unknown_linux_musl=musl-gcc cargo build --release --locked --target "$target" -p replicator --bin strait
bin="target/$target/release/strait"
strip "$bin"
if ldd "$bin" 2>&1 | grep -q "not a dynamic executable\|statically linked"; then
  echo "build-static: $bin is static ($(ldd "$bin" 2>&1 | head -1 | sed 's/^\s*//'))"
else
  echo "build-static: $bin is not static:" >&2
  ldd "$bin" >&2 || true
  exit 1
fi
echo "build-static: $bin $(stat -c %s "$bin") bytes ($(( $(stat -c %s "$bin") / 1024 / 1024 )) MiB)"
