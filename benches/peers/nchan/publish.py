#!/usr/bin/env python3
"""Publisher for the nginx + nchan peer (benches/compare.sh).

Reads a fragmented MP4, splits it into fragments (moof + mdat, as ssecast does), and POSTs each
fragment as base64 to nchan's publisher location in real time (or --speed times faster), looping
forever. nchan then sends every message body to each EventSource subscriber as the event data.

The base64 encoding happens here once per fragment, so nchan, like ssecast, only fans out bytes
that are already encoded. tfdt is not rewritten on loop: the benchmark measures delivery, not
playback. Python standard library only.
"""

import argparse
import base64
import http.client
import struct
import sys
import time


def boxes(data, start=0, end=None):
    """Yields (type, box_start, payload_start, box_end) for the boxes in data[start:end]."""
    end = len(data) if end is None else end
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack(">I4s", data[pos:pos + 8])
        header = 8
        if size == 1:
            if pos + 16 > end:
                break
            size = struct.unpack(">Q", data[pos + 8:pos + 16])[0]
            header = 16
        elif size == 0:
            size = end - pos
        if size < header or pos + size > end:
            break
        yield kind.decode("latin-1"), pos, pos + header, pos + size
        pos += size


def child(data, start, end, kind):
    for k, _, p, e in boxes(data, start, end):
        if k == kind:
            return p, e
    return None


def track_info(data, moov):
    """Returns ({track_id: timescale}, {track_id: trex default sample duration})."""
    timescales, trex = {}, {}
    for kind, _, p, e in boxes(data, *moov):
        if kind == "trak":
            tkhd = child(data, p, e, "tkhd")
            mdia = child(data, p, e, "mdia")
            mdhd = mdia and child(data, mdia[0], mdia[1], "mdhd")
            if not (tkhd and mdhd):
                continue
            v = data[tkhd[0]]
            track_id = struct.unpack(">I", data[tkhd[0] + (20 if v == 1 else 12):][:4])[0]
            v = data[mdhd[0]]
            timescale = struct.unpack(">I", data[mdhd[0] + (20 if v == 1 else 12):][:4])[0]
            timescales[track_id] = timescale
        elif kind == "mvex":
            for k, _, tp, _ in boxes(data, p, e):
                if k == "trex":
                    track_id, _, duration = struct.unpack(">III", data[tp + 4:tp + 16])
                    trex[track_id] = duration
    return timescales, trex


def fragment_seconds(data, moof, timescales, trex):
    """Duration of a fragment's first track run (the video track in ffmpeg's output), or None."""
    traf = child(data, moof[0], moof[1], "traf")
    if not traf:
        return None
    tfhd = child(data, traf[0], traf[1], "tfhd")
    if not tfhd:
        return None
    flags = struct.unpack(">I", data[tfhd[0]:tfhd[0] + 4])[0] & 0xFFFFFF
    track_id = struct.unpack(">I", data[tfhd[0] + 4:tfhd[0] + 8])[0]
    off = tfhd[0] + 8 + (8 if flags & 0x01 else 0) + (4 if flags & 0x02 else 0)
    default = trex.get(track_id, 0)
    if flags & 0x08:
        default = struct.unpack(">I", data[off:off + 4])[0]
    total = 0
    for kind, _, p, _ in boxes(data, *traf):
        if kind != "trun":
            continue
        flags, count = struct.unpack(">II", data[p:p + 8])
        flags &= 0xFFFFFF
        off = p + 8 + (4 if flags & 0x01 else 0) + (4 if flags & 0x04 else 0)
        per_sample = sum(4 for bit in (0x100, 0x200, 0x400, 0x800) if flags & bit)
        for _ in range(count):
            if flags & 0x100:
                total += struct.unpack(">I", data[off:off + 4])[0]
            else:
                total += default
            off += per_sample
    timescale = timescales.get(track_id)
    if not timescale or total == 0:
        return None
    return total / timescale


def split(data):
    """Returns (init segment, [(fragment bytes, seconds)])."""
    top = list(boxes(data))
    moov = next(((p, e) for k, _, p, e in top if k == "moov"), None)
    first_moof = next((s for k, s, _, _ in top if k == "moof"), None)
    if moov is None or first_moof is None:
        sys.exit("not a fragmented MP4 (need moov + moof boxes); remux with "
                 "ffmpeg -movflags frag_keyframe+empty_moov+default_base_moof")
    timescales, trex = track_info(data, moov)
    fragments = []
    current = None
    for kind, start, payload, end in top:
        if kind == "moof":
            if current:
                fragments.append(current)
            current = [start, end, (payload, end)]
        elif kind == "mdat" and current:
            current[1] = end
        elif kind in ("mfra", "moov") and current:
            fragments.append(current)
            current = None
    if current:
        fragments.append(current)
    out = []
    for start, end, moof in fragments:
        seconds = fragment_seconds(data, moof, timescales, trex) or 1.0
        out.append((data[start:end], seconds))
    return data[:first_moof], out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("video", help="fragmented MP4 file")
    ap.add_argument("--url", default="http://127.0.0.1:8080/pub", help="nchan publisher URL")
    ap.add_argument("--speed", type=float, default=1.0, help="playout speed factor (default 1)")
    ap.add_argument("--loops", type=int, default=0, help="stop after this many loops (0: never)")
    args = ap.parse_args()
    if args.speed <= 0:
        sys.exit("--speed must be > 0")
    if not args.url.startswith("http://"):
        sys.exit("--url must be http://host:port/path")
    hostport, _, path = args.url[len("http://"):].partition("/")
    host, _, port = hostport.partition(":")
    path = "/" + path

    with open(args.video, "rb") as f:
        data = f.read()
    _, fragments = split(data)
    encoded = [(base64.b64encode(frag), secs) for frag, secs in fragments]
    print(f"publish: {len(encoded)} fragments, {sum(s for _, s in encoded):.2f} s per loop, "
          f"speed {args.speed}", file=sys.stderr, flush=True)

    conn = None
    seq = 0
    start = time.monotonic()
    due = 0.0
    loop = 0
    while args.loops == 0 or loop < args.loops:
        for body, seconds in encoded:
            delay = start + due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            for attempt in range(2):
                try:
                    if conn is None:
                        conn = http.client.HTTPConnection(host, int(port or 80), timeout=10)
                    conn.request("POST", path, body=body,
                                 headers={"Content-Type": "text/plain"})
                    resp = conn.getresponse()
                    resp.read()
                    if resp.status >= 300:
                        print(f"publish: HTTP {resp.status} for fragment {seq}",
                              file=sys.stderr, flush=True)
                    break
                except (OSError, http.client.HTTPException) as e:
                    conn = None
                    if attempt == 1:
                        print(f"publish: fragment {seq} failed: {e}", file=sys.stderr, flush=True)
            seq += 1
            due += seconds / args.speed
        loop += 1


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
