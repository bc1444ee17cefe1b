#!/usr/bin/env bash
# The main job, locally: two real Kafka-compatible brokers (tansu), sample data on the first,
# Strait mirroring it to the second, and what arrived — remote topics, record counts and a
# consumer group's offsets translated through MM2-format checkpoints.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scripts/install-deps.sh
scripts/install-tansu.sh
echo "== building strait (release)"
cargo build --release --locked -p replicator --bin strait
strait="$root/target/release/strait"
tansu="$root/.tansu/bin/tansu"
work="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
start_broker() { # name port
  "$tansu" broker --cluster-id "$1" --listener-url "tcp://127.0.0.1:$2" \
    --advertised-listener-url "tcp://127.0.0.1:$2" --storage-engine memory://tansu/ \
    >"$work/$1.log" 2>&1 &
  pids+=($!)
}
pa=$(free_port); pb=$(free_port)
start_broker demo-a "$pa"; start_broker demo-b "$pb"
A="127.0.0.1:$pa"; B="127.0.0.1:$pb"
for addr in "$A" "$B"; do
  for _ in $(seq 1 100); do (echo > "/dev/tcp/${addr%:*}/${addr#*:}") 2>/dev/null && break; sleep 0.1; done
done
echo "== two tansu clusters: A=$A B=$B"

records="${DEMO_RECORDS:-20000}"
"$strait" sample produce --bootstrap "$A" --records "$records"

cat > "$work/mm2.properties" <<PROPS
clusters = A, B
A.bootstrap.servers = $A
B.bootstrap.servers = $B
A->B.enabled = true
A->B.topics = .*
replication.factor = 1
offset-syncs.topic.replication.factor = 1
checkpoints.topic.replication.factor = 1
heartbeats.topic.replication.factor = 1
offset.storage.replication.factor = 1
emit.checkpoints.interval.seconds = 1
PROPS
echo "== strait check"
"$strait" check --config "$work/mm2.properties"

echo "== strait run (mirroring A -> B)"
STRAIT_LOG=${STRAIT_LOG:-info} "$strait" run --config "$work/mm2.properties" 2>"$work/strait.log" &
spid=$!; pids+=($spid)
want=$((records * 4))
for _ in $(seq 1 300); do
  got=$("$strait" sample summary --bootstrap "$B" 2>/dev/null | awk '$1 ~ /^A\.(orders|payments)$/ {s+=$4} END {print s+0}')
  [ "$got" -ge "$want" ] && break
  sleep 0.2
done
sleep 2   # one more checkpoint interval
kill -TERM "$spid"; wait "$spid" && echo "strait stopped cleanly (exit 0)"
grep -E "replicating|created remote topic" "$work/strait.log" | sed 's/^/  log: /' | head -8

echo "== what B holds now"
"$strait" sample summary --bootstrap "$B"
echo "== group 'analytics' translated for B (strait translate; MM2's RemoteClusterUtils.translateOffsets)"
"$strait" translate --config "$work/mm2.properties" --source A --target B --group analytics
