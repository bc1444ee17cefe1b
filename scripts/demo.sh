#!/usr/bin/env bash
# The main job, locally: two Apache Kafka clusters (KRaft, single node each, run from the Maven
# Central jars of scripts/install-kafka.sh), sample data on the first, Strait mirroring it to the
# second, and what arrived — remote topics, record counts, MM2's internal records decoded and a
# consumer group's offsets translated through MM2-format checkpoints.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scripts/install-deps.sh
libs="$(scripts/install-kafka.sh)"
echo "== building strait (release)"
cargo build --release --locked -p replicator --bin strait
strait="$root/target/release/strait"
work="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; sleep 1; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
start_broker() { # name -> sets $addr (not a subshell: its pid must reach $pids)
  local name="$1" port ctl dir
  port=$(free_port); ctl=$(free_port); dir="$work/$name"
  mkdir -p "$dir"
  cat > "$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$ctl
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$ctl
advertised.listeners=PLAINTEXT://127.0.0.1:$port
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$dir/data
offsets.topic.replication.factor=1
offsets.topic.num.partitions=5
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=5
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
num.network.threads=2
num.io.threads=2
background.threads=2
log.cleaner.dedupe.buffer.size=2097152
PROPS
  cat > "$dir/log4j2.properties" <<'PROPS'
status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.out.ref = OUT
PROPS
  java -cp "$libs/*" kafka.tools.StorageTool format --config "$dir/server.properties" \
    --cluster-id "$(python3 -c 'import base64,os; print(base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("="))')" \
    >"$dir/format.log" 2>&1
  java -Xms256m -Xmx512m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
    -Dlog4j2.configurationFile="$dir/log4j2.properties" -cp "$libs/*" kafka.Kafka "$dir/server.properties" \
    >"$dir/broker.log" 2>&1 &
  pids+=($!)
  addr="127.0.0.1:$port"
}
start_broker demo-a; A=$addr
start_broker demo-b; B=$addr
for addr in "$A" "$B"; do
  ok=""
  for _ in $(seq 1 300); do
    if "$strait" sample summary --bootstrap "$addr" >/dev/null 2>&1; then ok=1; break; fi
    sleep 0.2
  done
  [ -n "$ok" ] || { echo "Apache Kafka at $addr did not start:"; cat "$work"/demo-*/broker.log; exit 1; }
done
echo "== two Apache Kafka clusters: A=$A B=$B"

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
