#!/usr/bin/env bash
# Scale-out on loopback: an origin with N edges (each relaying its stream) against the same
# origin with N direct viewers, and the delay one edge level adds. A manual benchmark, not run
# in CI; everything listens on and connects to 127.0.0.1 only.
#
#   benches/scaleout.sh            EDGES=10 CLIENTS=1000 DURATION=20
#
# 1. Origin CPU: the origin's CPU time (/proc/PID/schedstat) over DURATION seconds while it
#    serves EDGES edges, then while it serves EDGES direct viewers (ssecast-load).
# 2. Delay: ssecast-load with CLIENTS viewers directly on the origin, then on one edge; its
#    latency is from the time in each event id (when the fragment went live on the origin) to
#    its arrival, so the difference is what the edge adds.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
EDGES="${EDGES:-10}"
CLIENTS="${CLIENTS:-1000}"
DURATION="${DURATION:-20}"
ssecast="$root/target/release/ssecast"
loadgen="$root/target/release/ssecast-load"
cargo build --release --quiet
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
cpu_ns() { awk '{print $1}' "/proc/$1/schedstat"; }
wait_up() { for _ in $(seq 50); do curl -sf --max-time 1 "http://127.0.0.1:$1/healthz" >/dev/null && return; sleep 0.1; done; echo "no server on $1" >&2; exit 1; }

op="$(port)"
taskset -c 0 "$ssecast" --listen "127.0.0.1:$op" --rtmp off >/dev/null 2>&1 & origin=$!; pids+=("$origin")
wait_up "$op"

measure() { # $1: label; runs while the caller's clients are connected
    local a b; a="$(cpu_ns "$origin")"; sleep "$DURATION"; b="$(cpu_ns "$origin")"
    echo "$1: origin CPU $(( (b - a) / 1000000 )) ms in ${DURATION} s"
}

edge_ports=()
for _ in $(seq "$EDGES"); do
    p="$(port)"; edge_ports+=("$p")
    taskset -c 1 "$ssecast" --listen "127.0.0.1:$p" --rtmp off "cam=http://127.0.0.1:$op/events/sample" >/dev/null 2>&1 &
    pids+=("$!")
done
for p in "${edge_ports[@]}"; do wait_up "$p"; done
sleep 2
measure "$EDGES edges"
for p in "${pids[@]:1}"; do kill "$p"; done
pids=("$origin")
sleep 1
taskset -c 1 "$loadgen" --url "http://127.0.0.1:$op/events" --clients "$EDGES" --duration "$((DURATION + 3))" >/dev/null 2>&1 &
lg=$!
sleep 2
measure "$EDGES direct viewers"
wait "$lg" || true

echo "delay with $CLIENTS viewers (ssecast-load latency, from the origin's event time):"
taskset -c 1 "$loadgen" --url "http://127.0.0.1:$op/events" --clients "$CLIENTS" --ramp 2000 --duration "$DURATION" --json \
    | python3 -c 'import json,sys; r=json.load(sys.stdin); print("  direct on the origin: p50 %.1f ms, p99 %.1f ms, %d gaps" % (r["latency_ms_p50"], r["latency_ms_p99"], r["gaps"]))'
ep="$(port)"
taskset -c 0 "$ssecast" --listen "127.0.0.1:$ep" --rtmp off "cam=http://127.0.0.1:$op/events/sample" >/dev/null 2>&1 & pids+=("$!")
wait_up "$ep"; sleep 2
taskset -c 1 "$loadgen" --url "http://127.0.0.1:$ep/events/cam" --clients "$CLIENTS" --ramp 2000 --duration "$DURATION" --json \
    | python3 -c 'import json,sys; r=json.load(sys.stdin); print("  through one edge:     p50 %.1f ms, p99 %.1f ms, %d gaps" % (r["latency_ms_p50"], r["latency_ms_p99"], r["gaps"]))'
