#!/usr/bin/env bash
# Side-by-side benchmark: ssecast vs nginx+nchan, a Node.js EventEmitter server and an axum/tokio
# server, all streaming the same looping MP4 over SSE, under the same loads from ssecast-load.
# The `floor` row is examples/floor.rs: no event loop, no queue, one plain write of the same
# pre-encoded event per viewer — the least any server can spend, i.e. the kernel's share.
# The `ssecast-live` row is ssecast serving a live stream instead of a file: ffmpeg (pinned with
# the load generator, so only the server is measured) publishes the same video at real time
# (`-re -stream_loop -1 -c copy`) to /publish/live over HTTP, and the clients watch /events/live.
# The `ssecast-gzip` row is ssecast serving the same file to clients that ask for gzip
# (ssecast-load --gzip): every event compressed once and shared, the clients inflating.
# The `ssecast-rtmp` row is the same live stream published over RTMP instead (`-c copy -f flv`),
# muxed by ssecast itself into parts of RTMP_PART (default 200ms, ssecast's --part default).
# `ssecast-parts` and `ssecast-gops` are live too, from an ffmpeg encoding a test pattern in real
# time (lavfi testsrc2 640x360, 30 fps, x264 -tune zerolatency, 1 s GOP): parts publishes one
# frame per fragment (frag_every_frame: 30 events a second), gops one fragment per GOP.
# A manual benchmark (not run in CI). Everything listens on and connects to 127.0.0.1 only.
#
#   benches/compare.sh
#
# Environment (defaults):
#   CLIENTS="100 1000"   client counts, one run per server and count
#   DURATION=20          seconds of load per run (ssecast-load --duration)
#   RAMP=500             connections opened per second (ssecast-load --ramp)
#   SPEED=1              playout speed for every server
#   SERVERS="ssecast floor nchan node axum"   (also: ssecast-gzip; ssecast-live, ssecast-rtmp,
#                        ssecast-parts, ssecast-gops, which need ffmpeg and SPEED=1)
#   RTMP_PART=200ms      --part for the ssecast-rtmp row (10s: fragments at keyframes only)
#   SSECAST_BIN=target/release/ssecast  (another build of the server, e.g. for a before/after)
#   VIDEO=web/sample.mp4
#   AXUM_THREADS=1       tokio worker threads for the axum peer (1 = current-thread runtime)
#   REPEAT=1             runs of every case (interleaved); the table shows medians
#   LOADGEN=target/release/ssecast-load  (the benches/loadgen/ workspace member)
#   BUILD=1              0: use the binaries as they are, without cargo build
#   PIN=1                pin each server to CPU 0 and the load generator to CPU 1 (taskset), so
#                        every server gets exactly one core, as ssecast is designed for
#
# Each run starts the server fresh, waits until it streams, then benches/peers/measure.py takes
# the server's CPU time (/proc/PID/stat utime+stime, all threads; nginx: master + worker) and RSS
# (VmRSS) before the load, samples RSS while clients connect, runs ssecast-load, and takes the CPU
# time again. Results: target/compare/results.jsonl, logs in target/compare/, the table on stdout
# and in target/compare.md.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

CLIENTS="${CLIENTS:-100 1000}"
DURATION="${DURATION:-20}"
RAMP="${RAMP:-500}"
SPEED="${SPEED:-1}"
SERVERS="${SERVERS:-ssecast floor nchan node axum}"
VIDEO="${VIDEO:-$root/web/sample.mp4}"
AXUM_THREADS="${AXUM_THREADS:-1}"
PIN="${PIN:-1}"
BUILD="${BUILD:-1}"
REPEAT="${REPEAT:-1}"

peers="$root/benches/peers"
out="$root/target/compare"
results="$out/results.jsonl"

say() { echo "compare: $*" >&2; }
die() { say "$*"; exit 1; }

# --- tools -----------------------------------------------------------------------------------
need_apt=()
command -v curl >/dev/null || need_apt+=(curl)
command -v python3 >/dev/null || need_apt+=(python3)
case " $SERVERS " in *" node "*) command -v node >/dev/null || need_apt+=(nodejs) ;; esac
case " $SERVERS " in *" ssecast-live "* | *" ssecast-rtmp "* | *" ssecast-parts "* | *" ssecast-gops "*) command -v ffmpeg >/dev/null || need_apt+=(ffmpeg) ;; esac
case " $SERVERS " in
    *" nchan "*)
        command -v nginx >/dev/null || need_apt+=(nginx-light)
        [ -f /usr/lib/nginx/modules/ngx_nchan_module.so ] \
            || ls /etc/nginx/modules-enabled/*nchan* >/dev/null 2>&1 || need_apt+=(libnginx-mod-nchan)
        ;;
esac
if [ "${#need_apt[@]}" -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        say "installing ${need_apt[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
    else
        die "missing: ${need_apt[*]} (run as root to install them with apt-get)"
    fi
fi
[ -f "$VIDEO" ] || die "no video at $VIDEO"
if [ "$PIN" = 1 ] && { ! command -v taskset >/dev/null || [ "$(nproc)" -lt 2 ]; }; then
    say "PIN=1 needs taskset and 2 CPUs; not pinning"
    PIN=0
fi
if [ "$PIN" = 1 ]; then
    pin_server=(taskset -c 0)
    pin_load=(taskset -c 1)
else
    pin_server=()
    pin_load=()
fi

# More clients than the default 1024 descriptors: raise the soft limit as far as allowed.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# --- builds ----------------------------------------------------------------------------------
ssecast="${SSECAST_BIN:-$root/target/release/ssecast}"
loadgen="${LOADGEN:-$root/target/release/ssecast-load}"
axum_bin="$peers/axum-sse/target/release/axum-sse-peer"
floor_bin="$root/target/release/examples/floor"
if [ "$BUILD" = 1 ]; then
    say "building ssecast and ssecast-load (release)"
    # Both are default workspace members, so this builds the server and the load generator.
    cargo build --release --quiet
    case " $SERVERS " in *" floor "*) cargo build --release --quiet --example floor ;; esac
    case " $SERVERS " in
        *" axum "*)
            say "building the axum peer (release)"
            cargo build --release --quiet --manifest-path "$peers/axum-sse/Cargo.toml"
            ;;
    esac
fi
[ -x "$loadgen" ] || die "no load generator at $loadgen"
case " $SERVERS " in *" ssecast"*) [ -x "$ssecast" ] || die "no $ssecast" ;; esac
case " $SERVERS " in
    *" ssecast-live "* | *" ssecast-rtmp "* | *" ssecast-parts "* | *" ssecast-gops "*)
        [ "$SPEED" = 1 ] || die "live streams play at real time only (SPEED=1)" ;;
esac
case " $SERVERS " in *" axum "*) [ -x "$axum_bin" ] || die "no $axum_bin" ;; esac
case " $SERVERS " in *" floor "*) [ -x "$floor_bin" ] || die "no $floor_bin" ;; esac

mkdir -p "$out"
: >"$results"

# --- server lifecycle ------------------------------------------------------------------------
server_pid=""      # the process we started (for nchan: run.sh)
publisher_pid=""   # ffmpeg, for ssecast-live
nchan_prefix=""

stop_server() {
    if [ -n "$publisher_pid" ]; then
        kill -TERM "$publisher_pid" 2>/dev/null || true
        wait "$publisher_pid" 2>/dev/null || true
        publisher_pid=""
    fi
    [ -n "$server_pid" ] || return 0
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 50); do
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    # run.sh stops nginx itself; this is only for a run.sh that died before it could.
    if [ -n "$nchan_prefix" ] && [ -f "$nchan_prefix/nginx.pid" ]; then
        kill -TERM "$(cat "$nchan_prefix/nginx.pid")" 2>/dev/null || true
    fi
    server_pid=""
    nchan_prefix=""
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_server
    [ -n "${work:-}" ] && rm -rf "$work"
    exit "$rc"
}
work="$(mktemp -d /tmp/ssecast-compare.XXXXXX)"
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# The stream each server's clients watch.
events_path() {
    case "$1" in ssecast-live | ssecast-rtmp | ssecast-parts | ssecast-gops) echo /events/live ;; *) echo /events ;; esac
}

# Starts server $1 on port $2; leaves its pids (the processes to measure) in $work/pids.
start_server() {
    local name="$1" port="$2" log="$out/$1-$3.log"
    case "$name" in
        ssecast-live)
            "${pin_server[@]}" "$ssecast" --listen "127.0.0.1:$port" --rtmp off >"$log" 2>&1 &
            server_pid=$!
            for _ in $(seq 50); do
                curl -sf --max-time 1 "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
                sleep 0.1
            done
            "${pin_load[@]}" ffmpeg -hide_banner -loglevel error -re -stream_loop -1 -i "$VIDEO" \
                -c copy -f mp4 -movflags frag_keyframe+empty_moov+default_base_moof \
                "http://127.0.0.1:$port/publish/live" >"$out/ffmpeg-$3.log" 2>&1 &
            publisher_pid=$!
            ;;
        ssecast-rtmp)
            local rtmp_port
            rtmp_port="$(free_port)"
            "${pin_server[@]}" "$ssecast" --listen "127.0.0.1:$port" \
                --rtmp "127.0.0.1:$rtmp_port" --part "${RTMP_PART:-200ms}" >"$log" 2>&1 &
            server_pid=$!
            for _ in $(seq 50); do
                curl -sf --max-time 1 "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
                sleep 0.1
            done
            "${pin_load[@]}" ffmpeg -hide_banner -loglevel error -re -stream_loop -1 -i "$VIDEO" \
                -c copy -f flv "rtmp://127.0.0.1:$rtmp_port/live/live" >"$out/ffmpeg-$3.log" 2>&1 &
            publisher_pid=$!
            ;;
        ssecast-parts | ssecast-gops)
            "${pin_server[@]}" "$ssecast" --listen "127.0.0.1:$port" --rtmp off >"$log" 2>&1 &
            server_pid=$!
            for _ in $(seq 50); do
                curl -sf --max-time 1 "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
                sleep 0.1
            done
            local flags=frag_keyframe+empty_moov+default_base_moof
            [ "$name" = ssecast-parts ] && flags="$flags+frag_every_frame"
            "${pin_load[@]}" ffmpeg -hide_banner -loglevel error -nostdin -re \
                -f lavfi -i testsrc2=size=640x360:rate=30 -c:v libx264 -preset veryfast \
                -tune zerolatency -g 30 -pix_fmt yuv420p -an -f mp4 -movflags "$flags" \
                "http://127.0.0.1:$port/publish/live" >"$out/ffmpeg-$3.log" 2>&1 &
            publisher_pid=$!
            ;;
        ssecast | ssecast-gzip)
            "${pin_server[@]}" "$ssecast" --listen "127.0.0.1:$port" --rtmp off --speed "$SPEED" "$VIDEO" \
                >"$log" 2>&1 &
            server_pid=$!
            ;;
        floor)
            "${pin_server[@]}" "$floor_bin" --port "$port" --speed "$SPEED" "$VIDEO" >"$log" 2>&1 &
            server_pid=$!
            ;;
        node)
            "${pin_server[@]}" node "$peers/node/server.js" --port "$port" --speed "$SPEED" \
                "$VIDEO" >"$log" 2>&1 &
            server_pid=$!
            ;;
        axum)
            "${pin_server[@]}" "$axum_bin" --port "$port" --speed "$SPEED" \
                --threads "$AXUM_THREADS" "$VIDEO" >"$log" 2>&1 &
            server_pid=$!
            ;;
        nchan)
            nchan_prefix="$work/nchan-$3"
            mkdir -p "$nchan_prefix"
            # taskset on run.sh pins nginx and the publisher it starts (affinity is inherited).
            "${pin_server[@]}" "$peers/nchan/run.sh" --port "$port" --speed "$SPEED" \
                --prefix "$nchan_prefix" "$VIDEO" >"$log" 2>&1 &
            server_pid=$!
            ;;
        *) die "unknown server $name (known: ssecast ssecast-gzip ssecast-live ssecast-rtmp ssecast-parts ssecast-gops floor nchan node axum)" ;;
    esac

    # Ready = /events answers 200 and a data event has gone out (so a new client gets one).
    local ok=0
    local probe
    for _ in $(seq 20); do
        kill -0 "$server_pid" 2>/dev/null || break
        # curl ends by --max-time on a stream that never ends, so its status says nothing.
        probe="$(curl -s -N --max-time 1.5 -H 'Accept: text/event-stream' \
            "http://127.0.0.1:$port$(events_path "$name")" 2>/dev/null | head -c 4096 || true)"
        if grep -q '^event: data' <<<"$probe"; then
            ok=1
            break
        fi
        sleep 0.2
    done
    if [ "$ok" != 1 ]; then
        tail -n 20 "$log" >&2 || true
        die "$name did not start streaming on 127.0.0.1:$port"
    fi

    if [ "$name" = nchan ]; then
        local master
        master="$(cat "$nchan_prefix/nginx.pid")"
        python3 "$peers/measure.py" pids "$master" >"$work/pids"
    else
        echo "$server_pid" >"$work/pids"
    fi
}

# ssecast-load counts a "stall" when a client waits more than twice this for a data event.
interval_ms="$(python3 -c "print(max(1, round(1000 / float('$SPEED'))))")"
expect_interval() {
    if [ "$1" = ssecast-parts ]; then echo 33; else echo "$interval_ms"; fi
}

# --- runs ------------------------------------------------------------------------------------
say "servers: $SERVERS; clients: $CLIENTS; ${DURATION}s each, ramp $RAMP/s, speed $SPEED, pin $PIN, $REPEAT run(s)"
for rep in $(seq "$REPEAT"); do
for name in $SERVERS; do
    for n in $CLIENTS; do
        port="$(free_port)"
        say "$name with $n clients on 127.0.0.1:$port (run $rep of $REPEAT)"
        start_server "$name" "$port" "$n"
        gzip=()
        [ "$name" = ssecast-gzip ] && gzip=(--gzip)
        python3 "$peers/measure.py" run --server "$name" --clients "$n" \
            --pids-file "$work/pids" --out "$results" \
            --loadgen-log "$out/$name-$n.loadgen.log" \
            --timeout "$((DURATION + 60))" -- \
            "${pin_load[@]}" "$loadgen" --url "http://127.0.0.1:$port$(events_path "$name")" --clients "$n" \
            --ramp "$RAMP" --duration "$DURATION" --expect-interval-ms "$(expect_interval "$name")" \
            "${gzip[@]}" --json >/dev/null \
            || say "$name with $n clients: the load generator gave no report (see $out/$name-$n.loadgen.log)"
        stop_server
    done
done
done

echo
python3 "$peers/measure.py" table "$results" --md "$root/target/compare.md"
say "table written to target/compare.md; raw results in $results"
