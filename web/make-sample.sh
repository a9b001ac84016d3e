#!/usr/bin/env bash
# Regenerates web/sample.mp4, the video ssecast plays when no VIDEO is given:
# a 6 s looping test pattern (640x360, 25 fps, H.264 Main, 1 s GOPs, no B-frames so presentation
# time equals decode time and loops join without an overlap) with a 440 Hz AAC tone,
# fragmented at every keyframe so each fragment is one 1 s GOP (moof+mdat).
# Needs ffmpeg (Debian: apt-get install ffmpeg). Usage: bash web/make-sample.sh
set -euo pipefail
out="$(dirname "$0")/sample.mp4"
ffmpeg -hide_banner -loglevel error -y \
  -f lavfi -i "testsrc2=size=640x360:rate=25:duration=6" \
  -f lavfi -i "sine=frequency=440:sample_rate=48000:duration=6" \
  -c:v libx264 -profile:v main -level 3.0 -preset veryfast -pix_fmt yuv420p \
  -b:v 350k -maxrate 400k -bufsize 400k -g 25 -keyint_min 25 -sc_threshold 0 -bf 0 \
  -c:a aac -b:a 64k -ac 2 \
  -movflags frag_keyframe+empty_moov+default_base_moof \
  -map_metadata -1 -fflags +bitexact -flags:v +bitexact -flags:a +bitexact \
  "$out"
ls -l "$out"
