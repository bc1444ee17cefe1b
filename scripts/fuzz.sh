#!/usr/bin/env bash
# Builds and runs the cargo-fuzz targets in fuzz/ (see fuzz/README.md).
#
#   scripts/fuzz.sh smoke [runs]        every target for a fixed number of executions (default
#                                       20000) against a scratch copy of its seeds; what CI runs
#   scripts/fuzz.sh run <seconds> [target...]
#                                       each target (default: all) for that long, growing the
#                                       working corpus fuzz/corpus/<target> from fuzz/seeds/<target>
#   scripts/fuzz.sh build               build all targets only
#
# Installs what it needs when missing (a nightly toolchain, cargo-fuzz). Targets are built once,
# with debug assertions (overflow checks) and AddressSanitizer, then the binaries are run
# directly, one process and one job each (the machine is shared). fuzz/seeds is never written.
# Prints executions, exec/s, corpus size and the result per target; exits non-zero if any
# target crashed (the input is kept under fuzz/artifacts/<target>/).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

usage() {
  sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
}

ensure_tools() {
  if ! rustup toolchain list | grep -q '^nightly'; then
    echo "== installing the nightly toolchain"
    rustup toolchain install nightly --profile minimal
  fi
  if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz --locked
  fi
}

build() {
  echo "== cargo +nightly fuzz build --debug-assertions"
  local t0=$SECONDS
  cargo +nightly fuzz build --debug-assertions
  echo "== built in $((SECONDS - t0)) s"
}

targets() {
  cargo +nightly fuzz list
}

binary() {
  local triple
  triple="$(rustc +nightly -vV | sed -n 's/^host: //p')"
  echo "fuzz/target/$triple/release/$1"
}

# Reads libFuzzer's -print_final_stats output and the log into "executions exec/s".
stats() {
  local log=$1 execs rate
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  echo "${execs:-?} ${rate:-?}"
}

# The artifact a crashed run wrote, from its log.
artifact() {
  sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$1" | tail -1
}

summary=()
failed=0

# run_target <target> <corpus dir> <libFuzzer args...>
run_target() {
  local target=$1 corpus=$2
  shift 2
  local bin log status t0 result
  bin="$(binary "$target")"
  log="$(mktemp)"
  mkdir -p "fuzz/artifacts/$target"
  local seeds=()
  # In `run` mode the committed seeds are a second, read-only corpus directory.
  if [ "$corpus" != "fuzz/seeds/$target" ] && [ -d "fuzz/seeds/$target" ] && [ "$mode" = run ]; then
    seeds=("fuzz/seeds/$target")
  fi
  t0=$SECONDS
  set +e
  "$bin" -artifact_prefix="fuzz/artifacts/$target/" -print_final_stats=1 -timeout=10 \
    "$@" "$corpus" "${seeds[@]}" >"$log" 2>&1
  status=$?
  set -e
  read -r execs rate < <(stats "$log")
  local size
  size=$(find "$corpus" -type f | wc -l)
  if [ "$status" -eq 0 ]; then
    result=ok
  else
    result="CRASH (exit $status) $(artifact "$log")"
    failed=1
    echo "---- $target: last lines of the libFuzzer log"
    tail -n 40 "$log"
  fi
  grep -h '^frame_decode: ' "$log" | head -1 || true
  summary+=("$(printf '%-18s %12s execs %8s exec/s %6s corpus files %5ss  %s' \
    "$target" "$execs" "$rate" "$size" "$((SECONDS - t0))" "$result")")
  rm -f "$log"
}

# Known reproducers (fuzz/regressions/<target>/) must keep passing.
replay_regressions() {
  local target=$1 dir="fuzz/regressions/$1"
  [ -d "$dir" ] || return 0
  local files=("$dir"/*)
  [ -e "${files[0]}" ] || return 0
  if ! "$(binary "$target")" -runs=1 "${files[@]}" >/dev/null 2>&1; then
    echo "---- $target: a regression input fails again:"
    "$(binary "$target")" -runs=1 "${files[@]}" 2>&1 | tail -n 30
    summary+=("$(printf '%-18s regression inputs in %s FAIL' "$target" "$dir")")
    failed=1
  fi
}

mode=${1:-}
case "$mode" in
  smoke)
    runs=${2:-20000}
    start=$SECONDS
    ensure_tools
    build
    scratch="$(mktemp -d)"
    trap 'rm -rf "$scratch"' EXIT
    for t in $(targets); do
      replay_regressions "$t"
      mkdir -p "$scratch/$t"
      if [ -d "fuzz/seeds/$t" ]; then
        cp -R "fuzz/seeds/$t/." "$scratch/$t/"
      fi
      echo "== $t: $runs runs"
      run_target "$t" "$scratch/$t" -runs="$runs"
    done
    ;;
  run)
    seconds=${2:-}
    [[ "$seconds" =~ ^[0-9]+$ ]] || usage
    shift 2
    start=$SECONDS
    ensure_tools
    build
    list=("$@")
    [ ${#list[@]} -gt 0 ] || mapfile -t list < <(targets)
    for t in "${list[@]}"; do
      replay_regressions "$t"
      mkdir -p "fuzz/corpus/$t"
      echo "== $t: $seconds s"
      run_target "$t" "fuzz/corpus/$t" -max_total_time="$seconds"
    done
    ;;
  build)
    ensure_tools
    build
    exit 0
    ;;
  *)
    usage
    ;;
esac

echo "== fuzz $mode summary"
printf '%s\n' "${summary[@]}"
echo "== fuzz $mode finished in $((SECONDS - start)) s"
exit "$failed"
