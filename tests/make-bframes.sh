#!/usr/bin/env bash
# Regenerates tests/bframes.mp4, the B-frame video the browser and unit tests loop: a 2 s test
# pattern (320x180, 25 fps, H.264 Main with libx264's default 3 B-frames, 1 s GOPs) with a 440 Hz
# AAC tone, fragmented the way the README tells users to. With B-frames the first frame is shown
# two frame durations after its decode time and ffmpeg writes no edit list for `empty_moov`, so
# the audio starts 80 ms before the picture: the case that used to lose frames at every loop point.
# Needs ffmpeg (Debian: apt-get install ffmpeg). Usage: bash tests/make-bframes.sh
set -euo pipefail
out="$(dirname "$0")/bframes.mp4"
ffmpeg -hide_banner -loglevel error -y \
  -f lavfi -i "testsrc2=size=320x180:rate=25:duration=2" \
  -f lavfi -i "sine=frequency=440:sample_rate=48000:duration=2" \
  -c:v libx264 -profile:v main -level 3.0 -preset veryfast -pix_fmt yuv420p \
  -b:v 200k -maxrate 250k -bufsize 250k -g 25 -keyint_min 25 -sc_threshold 0 -bf 3 \
  -c:a aac -b:a 48k -ac 2 \
  -movflags frag_keyframe+empty_moov+default_base_moof \
  -map_metadata -1 -fflags +bitexact -flags:v +bitexact -flags:a +bitexact \
  "$out"
ls -l "$out"
