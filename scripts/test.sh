#!/usr/bin/env bash
# The test command (README): installs what the tests need, then runs format, lint and the whole
# test suite against real brokers. Works on a fresh Debian machine with the Rust toolchain,
# python3/pip and apt.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

scripts/install-deps.sh
scripts/install-tansu.sh
# Two statements: `export X="$(cmd)"` would hide a failing installer from `set -e`.
STRAIT_KAFKA_LIBS="$(scripts/install-kafka.sh)"
export STRAIT_KAFKA_LIBS

echo "== cargo fmt --check"
cargo fmt --all --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test"
mkdir -p target
# Skips are listed per run (the file is appended to by every test process).
rm -f target/test-logs/skipped.txt
set +e
cargo test --workspace --locked --no-fail-fast "$@" 2>&1 | tee target/test-output.log
status=${PIPESTATUS[0]}
set -e
if [ -s target/test-logs/skipped.txt ]; then
  echo "== skipped tests (a broker lacks the feature; see tests/README.md)"
  sort -u target/test-logs/skipped.txt
fi
summary=$(grep -E '^test result:' target/test-output.log | awk '{p+=$4; f+=$6; i+=$8} END {printf "%d passed, %d failed, %d ignored\n", p, f, i}')
echo "== summary: $summary"
exit "$status"
