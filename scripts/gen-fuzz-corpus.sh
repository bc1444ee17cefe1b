#!/usr/bin/env bash
# Regenerates the librdkafka seeds of the fuzz targets: starts a tansu broker, produces with
# librdkafka (every codec, headers, null keys/values, idempotent and transactional producers),
# fetches the raw record bytes back with Strait's fetcher and writes them as
# fuzz/seeds/<target>/librdkafka-* (see fuzz/README.md). Other seed files are left alone.
#
#   scripts/gen-fuzz-corpus.sh [out dir]     (default: fuzz/seeds)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

out=${1:-fuzz/seeds}
scripts/install-tansu.sh
mkdir -p "$out"
cargo run --locked -p strait-tests --bin gen-fuzz-corpus -- "$out"
du -sh "$out"
