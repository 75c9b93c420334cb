#!/usr/bin/env bash
# Fleet figures on a real nats-server with JetStream (started here, on a
# free loopback port, with a throwaway store):
#  * alerts/s published through the outbox to JetStream: an agent raises
#    ALERTS alerts while the server is down (they wait in its outbox), then
#    the server starts and we time the drain until `vigil status` shows no
#    backlog;
#  * fleet hunt latency with 3 agents, each with EVENTS events spooled:
#    `vigil fleet hunt` wall time, median of RUNS runs.
#   EVENTS=200000 RUNS=5 scripts/bench-fleet.sh
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS=${EVENTS:-200000}
RUNS=${RUNS:-5}
work=$(mktemp -d /tmp/vigil-bench-fleet.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

scripts/setup.sh >/dev/null
cargo build --release --locked -p vigil >/dev/null 2>&1
vigil=$PWD/target/release/vigil
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
url="nats://127.0.0.1:$port"
now() { date +%s.%N; }
start_nats() {
  nats-server -js -sd "$work/js" -a 127.0.0.1 -p "$port" >>"$work/nats.log" 2>&1 &
  nats_pid=$!
  pids+=("$nats_pid")
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return; sleep 0.05; done
  echo "nats-server did not start" >&2; exit 1
}
# "<sink backlog> <events processed> <alerts>" of the agent in state dir $1
# ("1 0 0" while it is not answering yet).
backlog() {
  "$vigil" status --json --state-dir "$1" 2>/dev/null | python3 -c '
import json, sys
try:
    s = json.load(sys.stdin)
    print(s["sinks"][0]["backlog"], s["processed"], s["alerts"])
except Exception:
    print(1, 0, 0)'
}
config() { # host-id
  cat >"$work/$1.toml" <<EOF
host_id = "$1"
[outputs]
stdout = false
[alerts]
window_max_events = 0
[nats]
urls = ["$url"]
[fleet]
enabled = true
[[sinks]]
kind = "nats"
name = "fleet"
batch_max = 500
retry_min_ms = 50
retry_max_ms = 200
EOF
}

# 1. Publish rate: fill the outbox with the server down, then drain.
for i in 1 2 3; do
  "$vigil" synthetic --events "$EVENTS" --plant-every 50 --seed "$i" --host-id "host-$i" >"$work/host-$i.ndjson"
  config "host-$i"
done
"$vigil" run --keep-running --config "$work/host-1.toml" --state-dir "$work/host-1" \
  --spool-size-mb 256 --replay "$work/host-1.ndjson" >/dev/null 2>"$work/host-1.log" &
pids+=($!)
for _ in $(seq 600); do
  read -r _ processed _ < <(backlog "$work/host-1")
  [ "${processed:-0}" -ge "$EVENTS" ] && break
  sleep 0.2
done
read -r queued _ alerts < <(backlog "$work/host-1")
[ "${queued:-0}" -gt 0 ] || { echo "host-1 raised no alerts; see $work/host-1.log" >&2; cat "$work/host-1.log" >&2; exit 1; }
start_nats
t0=$(now)
for _ in $(seq 30000); do
  read -r left _ _ < <(backlog "$work/host-1")
  [ "$left" -eq 0 ] && break
  sleep 0.02
done
[ "$left" -eq 0 ] || { echo "the outbox did not drain" >&2; exit 1; }
t1=$(now)
pub_rate=$(python3 -c "print(f'{$queued/($t1-$t0):,.0f}')")

# 2. Fleet hunt latency with three agents.
for i in 2 3; do
  "$vigil" run --keep-running --config "$work/host-$i.toml" --state-dir "$work/host-$i" \
    --spool-size-mb 256 --replay "$work/host-$i.ndjson" >/dev/null 2>"$work/host-$i.log" &
  pids+=($!)
done
for i in 2 3; do
  for _ in $(seq 600); do
    read -r left processed _ < <(backlog "$work/host-$i")
    [ "${processed:-0}" -ge "$EVENTS" ] && [ "$left" -eq 0 ] && break
    sleep 0.2
  done
done
sleep 2 # heartbeats: every agent is in the registry
hunt() {
  # Exit 1 is "nothing found", still an answer.
  "$vigil" fleet hunt "$1" --url "$url" --json --timeout 60s 2>"$work/summary" >"$work/results" || [ $? -eq 1 ]
}
median() { python3 -c "import statistics,sys; print(f'{statistics.median(float(x) for x in sys.argv[1:])*1000:.0f}')" "$@"; }
times_sel=(); times_all=()
for _ in $(seq "$RUNS"); do
  t0=$(now); hunt 'process where process.name == "installer"'; t1=$(now)
  times_sel+=("$(python3 -c "print($t1-$t0)")")
  few=$(wc -l <"$work/results")
  t0=$(now); hunt 'network where destination.port == 443' ; t1=$(now)
  times_all+=("$(python3 -c "print($t1-$t0)")")
done
results=$(wc -l <"$work/results")
answered=$(python3 -c 'import json,sys; print(len(json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])["summary"]["answered"]))' "$work/summary")

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(date -u +%F); nats-server $(nats-server --version | awk '{print $NF}')"
echo
echo "| fleet (real nats-server, JetStream file store, loopback)   | figure                 |"
echo "|------------------------------------------------------------|------------------------|"
printf "| %-58s | %22s |\n" "outbox -> JetStream, acked (alerts/s; $queued queued)" "$pub_rate"
printf "| %-58s | %22s |\n" "fleet hunt, 3 agents x $EVENTS events, $few hits (ms, median)" "$(median "${times_sel[@]}")"
printf "| %-58s | %22s |\n" "fleet hunt, 3 agents, $results hits streamed back (ms, median)" "$(median "${times_all[@]}")"
printf "| %-58s | %22s |\n" "hosts answering" "$answered/3"
