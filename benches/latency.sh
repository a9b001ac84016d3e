#!/usr/bin/env bash
# Latency benchmark: how long after a fragment goes live on the server its first frame is on the
# screen of a real browser, and how long after the encoder wrote it.
#
# Starts target/release/ssecast on loopback, publishes a live lavfi test pattern with ffmpeg to
# /publish/bench in real time (-re, x264 -tune zerolatency, 30 fps, 1 s GOP; by default one frame
# per fragment, with a prft box before each moof: -write_prft wallclock), opens /bench in
# headless Chromium through chromedriver, lets it warm up, then watches it for DURATION seconds
# and prints what the page itself measured (window.ssecast.delay / .encoderDelay, see
# web/player.js): p50 / p95 / p99 / max of server-to-screen and encoder-to-screen delay, and the
# stalls and seeks after the warm-up. A manual benchmark (not run in CI); everything on 127.0.0.1.
#
#   benches/latency.sh
#   FRAGMENTS=gop benches/latency.sh          # one fragment per 1 s GOP instead
#   DURATION=0 FIRST=20 FRAGMENTS=gop benches/latency.sh   # only the first picture, 20 times
#
# Environment (defaults):
#   DURATION=60        seconds measured (the page keeps a minute of samples: at most 60; 0: none)
#   FIRST=0            then this many fresh page loads, each at a random point of the GOP, timed
#                      to their first presented frame (window.ssecast.timings)
#   WARMUP=5           seconds between opening the page and the start of the measurement
#   FRAGMENTS=part     part: one frame per fragment (frag_every_frame); gop: one per keyframe
#   LATENCY=           ?latency=SECONDS for the page (empty: its default)
#   AUDIO=0            1: add a 440 Hz AAC tone to the feed
#   SIZE=640x360
#   PORT=18400         the server's port (chromedriver takes PORT+1)
#   BUILD=1            0: use target/release/ssecast as it is
#   PIN=1              server on CPU 0, ffmpeg and the browser on CPU 1 (taskset), when there are 2
# Output: one summary line per figure on stdout, and the page's final report as JSON in
# target/latency/result.json (logs beside it).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

DURATION="${DURATION:-60}"
WARMUP="${WARMUP:-5}"
FRAGMENTS="${FRAGMENTS:-part}"
LATENCY="${LATENCY:-}"
AUDIO="${AUDIO:-0}"
SIZE="${SIZE:-640x360}"
PORT="${PORT:-18400}"
BUILD="${BUILD:-1}"
PIN="${PIN:-1}"
FIRST="${FIRST:-0}"
out="$root/target/latency"
mkdir -p "$out"

say() { echo "latency: $*" >&2; }
die() { say "$*"; exit 1; }

for tool in ffmpeg chromium chromedriver python3; do
    command -v "$tool" >/dev/null || die "needs $tool (Debian: apt-get install ffmpeg chromium chromium-driver python3)"
done
[ "$DURATION" -le 60 ] || die "DURATION is at most 60 (the page keeps a minute of samples)"
case "$FRAGMENTS" in
    part) movflags=frag_keyframe+empty_moov+default_base_moof+frag_every_frame ;;
    gop) movflags=frag_keyframe+empty_moov+default_base_moof ;;
    *) die "FRAGMENTS is part or gop, not $FRAGMENTS" ;;
esac
server_cpu=() other_cpu=()
if [ "$PIN" = 1 ] && command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
    server_cpu=(taskset -c 0) other_cpu=(taskset -c 1)
fi
if [ "$BUILD" = 1 ]; then
    cargo build --release -q -p ssecast
fi
ssecast="$root/target/release/ssecast"
[ -x "$ssecast" ] || die "no $ssecast (cargo build --release)"

pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

"${server_cpu[@]}" "$ssecast" --listen "127.0.0.1:$PORT" >"$out/ssecast.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do
    curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break
    sleep 0.1
done
curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null || die "ssecast did not start (see $out/ssecast.log)"

audio_in=() audio_out=(-an)
if [ "$AUDIO" = 1 ]; then
    audio_in=(-f lavfi -i sine=frequency=440:sample_rate=48000)
    audio_out=(-c:a aac)
fi
"${other_cpu[@]}" ffmpeg -hide_banner -loglevel error -nostdin -re \
    -f lavfi -i "testsrc2=size=$SIZE:rate=30" "${audio_in[@]}" \
    -c:v libx264 -preset veryfast -tune zerolatency -g 30 -pix_fmt yuv420p "${audio_out[@]}" \
    -f mp4 -movflags "$movflags" -write_prft wallclock \
    "http://127.0.0.1:$PORT/publish/bench" >"$out/ffmpeg.log" 2>&1 &
pids+=($!)

# chromedriver starts Chromium as its child, so killing chromedriver's group ends both.
"${other_cpu[@]}" setsid chromedriver --port=$((PORT + 1)) >"$out/chromedriver.log" 2>&1 &
driver=$!
pids+=($!)

query=""
[ -n "$LATENCY" ] && query="?latency=$LATENCY"
say "ssecast on :$PORT, ffmpeg publishing ${FRAGMENTS}s to /bench, Chromium watching /bench$query for ${WARMUP}+${DURATION} s"

rc=0
python3 - "$((PORT + 1))" "http://127.0.0.1:$PORT/bench$query" "$WARMUP" "$DURATION" \
    "$out/result.json" "$FRAGMENTS" "$FIRST" <<'EOF' || rc=$?
import json, random, statistics, sys, time, urllib.request, tempfile

port, url, warmup, duration, result, fragments, first = sys.argv[1:]
warmup, duration, first = float(warmup), float(duration), int(first)
base = f"http://127.0.0.1:{port}"

def call(method, path, body=None, timeout=60):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.load(r)["value"]

for _ in range(100):
    try:
        if call("GET", "/status", timeout=2).get("ready"):
            break
    except OSError:
        pass
    time.sleep(0.1)
profile = tempfile.mkdtemp(prefix="ssecast-latency-")
caps = {"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
    "binary": "/usr/bin/chromium",
    "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--autoplay-policy=no-user-gesture-required", "--mute-audio",
             "--window-size=1024,768", f"--user-data-dir={profile}"]}}}}
session = call("POST", "/session", caps)["sessionId"]

def run(script):
    return call("POST", f"/session/{session}/execute/sync", {"script": script, "args": []})

PROBE = """const s = window.ssecast || {};
return {state: s.state, errors: s.errors, stalls: s.stalls, seeks: s.seeks,
        seekReasons: s.seekReasons, resets: s.resets, dropped: s.dropped, appended: s.appended,
        target: s.target, jitter: s.jitter, fragment: s.fragment, rate: s.rate, margin: s.margin,
        firstFrameMs: s.firstFrameMs, timings: s.timings, startSkip: s.startSkip,
        delay: s.delay, encoderDelay: s.encoderDelay,
        status: document.getElementById('status').textContent,
        navigation: (performance.getEntriesByType('navigation')[0] || {}).toJSON(),
        resources: performance.getEntriesByType('resource').map((r) => [r.name, Math.round(r.startTime), Math.round(r.responseEnd)])};"""
loads = []
try:
    call("POST", f"/session/{session}/url", {"url": url})
    time.sleep(warmup)
    before = run("window.ssecast.clearDelays(); " + PROBE)
    time.sleep(duration)
    after = run(PROBE)
    for _ in range(first):
        time.sleep(random.uniform(0.5, 1.5))  # a fresh page at a random point of the GOP
        call("POST", f"/session/{session}/url", {"url": url})
        deadline = time.monotonic() + 10
        probe = run(PROBE)
        while probe["firstFrameMs"] is None and time.monotonic() < deadline:
            time.sleep(0.05)
            probe = run(PROBE)
        loads.append(probe)
finally:
    try:
        call("DELETE", f"/session/{session}")
    except OSError:
        pass

report = {"fragments": fragments, "warmup_s": warmup, "duration_s": duration,
          "before": before, "after": after, "loads": loads}
with open(result, "w") as f:
    json.dump(report, f, indent=1)

def ms(v):
    return "-" if v is None else f"{v * 1000:.0f}"

def line(name, d):
    if not d or not d.get("count"):
        return f"{name:<22} no samples"
    return (f"{name:<22} p50 {ms(d['p50'])} ms, p95 {ms(d['p95'])} ms, p99 {ms(d['p99'])} ms, "
            f"max {ms(d['max'])} ms ({d['count']} fragments)")

print(line("server-to-screen", after["delay"]))
print(line("encoder-to-screen", after["encoderDelay"]))
seeks = after["seeks"] - before["seeks"]
stalls = after["stalls"] - before["stalls"]
print(f"{'stalls, seeks':<22} {stalls} stalls and {seeks} seeks in {duration:.0f} s after the "
      f"warm-up (all seeks: {after['seekReasons']}), {after['resets']} resets, "
      f"{after['dropped']} dropped")
print(f"{'player':<22} first frame {after['firstFrameMs']} ms after the page began loading; "
      f"target margin {after['target']} s, fragments {after['fragment']:.3f} s, "
      f"errors {after['errors']}")
ok = after["state"] == "connected" and not after["errors"] and (duration == 0 or after["delay"]["count"])
if loads:
    shown = [p["firstFrameMs"] for p in loads if p["firstFrameMs"] is not None]
    print(f"{'first picture':<22} {len(shown)} of {len(loads)} loads showed a frame: "
          + (f"median {statistics.median(shown):.0f} ms, max {max(shown)} ms, "
             f"all {sorted(shown)}" if shown else "none"))
    stages = ["script", "open", "init", "sourceOpen", "firstData", "firstAppended", "start",
              "seeked", "firstFrame"]
    medians = []
    for name in stages:
        v = [p["timings"][name] for p in loads if name in (p["timings"] or {})]
        if v:
            medians.append(f"{name} {statistics.median(v):.0f}")
    print(f"{'  median ms since load':<22} " + ", ".join(medians))
    skips = [p["startSkip"] for p in loads if p["startSkip"] is not None]
    if skips:
        print(f"{'  started into GOP':<22} median {statistics.median(skips):.2f} s, "
              f"max {max(skips):.2f} s")
    ok = ok and len(shown) == len(loads) and not any(p["errors"] for p in loads)
sys.exit(0 if ok else 1)
EOF
kill -- -"$driver" 2>/dev/null || true
[ "$rc" = 0 ] || die "the page did not play cleanly (see $out/result.json)"
