// ssecast viewer: how far behind the live edge to play, and how to stay there. Pure logic (no
// DOM, no media element, no clock of its own), so node's test runner checks it
// (`web/latency.test.js`); the page loads it before player.js as `window.ssecastLatency`.
//
// The controlled quantity is the margin: the seconds buffered ahead of the playhead when a
// fragment arrives. A fragment's first frame is shown that long after it arrived, so the margin
// is the delay a viewer sees on top of the network; with long fragments the rest of a fragment
// is shown later still, as it plays. The controller plays a little faster (1.05, or MAX_RATE when
// far off) while the margin is above its target and a little slower (0.95, MIN_RATE when nearly
// dry) while it is below, and asks for a seek only when the playhead is far behind (a hidden tab,
// a pause, a reset). The rate takes few values and changes rarely, with hysteresis: Chromium can
// drop a frame when the rate changes, so a rate that follows every arrival would cost frames. The target is a floor that
// suits the fragments' length, raised while fragments arrive unevenly: like a WebRTC jitter
// buffer, the player keeps enough margin for the lateness it saw in the last 20 s (its 99th
// percentile), measured on the page's own clock, so no clock has to agree with the server's.
'use strict';

((root) => {
  // A fragment shorter than this is a "part" (a frame or a few): the target is then SHORT_TARGET.
  const SHORT_FRAGMENT = 0.25;
  const SHORT_TARGET = 0.1; // seconds of margin with short parts
  const LONG_TARGET = 0.3; // seconds of margin with long fragments (one GOP each)
  const MAX_RATE = 1.1; // fastest catch-up; with preservesPitch this is not audible
  const FAST_RATE = 1.05; // catch-up for smaller errors
  const FAST_ERROR = 0.5; // seconds over the target from which MAX_RATE is used
  const SLOW_RATE = 0.95; // while the margin is below the target...
  const MIN_RATE = 0.9; // ...and while it is nearly gone
  const DRY = 0.02; // seconds of margin that count as nearly gone
  const BAND = 0.02; // seconds of error that start a correction; it ends at half of it
  const BAND_PER_FRAGMENT = 0.25; // with long fragments, the band is this part of one (above)
  const WINDOW_MS = 1000; // margins over this long are judged by their lowest (jitter)
  const FAR = 0.75; // seconds beyond the target that call for a seek (at least 2 fragments)
  const MAX_OVERRIDE = 30;
  const JITTER_SPAN_MS = 20000; // the lateness of arrivals over this long sets the jitter
  const JITTER_MIN_SAMPLES = 10; // fewer arrivals than this say nothing about jitter
  const JITTER_SAFETY = 0.03; // seconds of margin kept beyond the jitter
  const MAX_JITTER_TARGET = 1; // jitter never asks for more margin than this

  // The margin to aim for: at least `override` (from `?latency=`) when it is a sane number of
  // seconds, else one that suits fragments of `fragmentSecs` (null while unknown: long, to be
  // safe); more when arrivals were `jitterSecs` late.
  function targetMargin(fragmentSecs, override, jitterSecs = 0) {
    let floor = fragmentSecs !== null && fragmentSecs < SHORT_FRAGMENT ? SHORT_TARGET : LONG_TARGET;
    if (Number.isFinite(override) && override > 0 && override <= MAX_OVERRIDE) floor = override;
    if (!(jitterSecs > 0)) return floor;
    return Math.max(floor, Math.min(MAX_JITTER_TARGET, jitterSecs + JITTER_SAFETY));
  }

  // `?latency=SECONDS` from a query string, or null.
  function parseOverride(search) {
    const m = /(?:^\?|&)latency=([0-9]*\.?[0-9]+)(?:&|$)/.exec(search || '');
    if (!m) return null;
    const v = Number(m[1]);
    return v > 0 && v <= MAX_OVERRIDE ? v : null;
  }

  class RateController {
    constructor() {
      this.margins = []; // [atMs, seconds] of recent arrivals, oldest first
      this.rate = 1;
    }

    // A fragment (of `fragmentSecs`, null while unknown) arrived at `atMs` with `margin` seconds
    // buffered ahead of the playhead; returns the playback rate to use now.
    arrival(atMs, margin, target, fragmentSecs = null) {
      this.margins.push([atMs, margin]);
      while (this.margins.length > 1 && atMs - this.margins[0][0] > WINDOW_MS) this.margins.shift();
      let low = Infinity;
      for (const [, m] of this.margins) low = Math.min(low, m);
      const error = low - target;
      const band = Math.max(BAND, BAND_PER_FRAGMENT * (fragmentSecs || 0));
      if (error > band) this.rate = error > FAST_ERROR ? MAX_RATE : FAST_RATE;
      // Below the target the band is at most half the target: a thin buffer is a stall ahead.
      else if (error < -Math.min(band, target / 2)) this.rate = low < DRY ? MIN_RATE : SLOW_RATE;
      else if (Math.abs(error) <= band / 2) this.rate = 1;
      return this.rate;
    }

    // Forgets the past (after a seek or a new MediaSource): the rate goes back to 1.
    reset() {
      this.margins = [];
      this.rate = 1;
      return this.rate;
    }
  }

  // True when `ahead` seconds buffered ahead of the playhead is so far beyond the target that
  // playing faster would take too long: the player should seek to `target + fragmentSecs`
  // before the buffered end.
  function farBehind(ahead, target, fragmentSecs) {
    const frag = fragmentSecs || 0;
    return ahead > target + frag + Math.max(FAR, 2 * frag);
  }

  // Samples over a sliding window (the page's delays): the newest, p50, p95, p99 and max.
  class Window {
    constructor(spanMs) {
      this.spanMs = spanMs;
      this.samples = []; // [atMs, value], oldest first
    }

    add(atMs, value) {
      this.samples.push([atMs, value]);
      this.trim(atMs);
    }

    trim(nowMs) {
      let drop = 0;
      while (drop < this.samples.length && nowMs - this.samples[drop][0] > this.spanMs) drop++;
      if (drop) this.samples.splice(0, drop);
    }

    clear() {
      this.samples = [];
    }

    // {current, min, p50, p95, p99, max, count} of what is in the window at `nowMs`; values null
    // when it is empty.
    summary(nowMs) {
      this.trim(nowMs);
      const n = this.samples.length;
      if (!n) {
        return { current: null, min: null, p50: null, p95: null, p99: null, max: null, count: 0 };
      }
      const sorted = this.samples.map((s) => s[1]).sort((a, b) => a - b);
      const at = (q) => sorted[Math.min(n - 1, Math.floor(q * n))];
      return {
        current: this.samples[n - 1][1],
        min: sorted[0],
        p50: at(0.5),
        p95: at(0.95),
        p99: at(0.99),
        max: sorted[n - 1],
        count: n,
      };
    }
  }

  // How unevenly fragments arrive: each arrival's transit (page clock minus the fragment's media
  // time) against the quickest one of the window. Fragments that came in a burst at the start
  // (the backlog) must not be fed to it, and `clear` after a seek or a timeline shift.
  class Jitter {
    constructor() {
      this.transits = new Window(JITTER_SPAN_MS);
    }

    arrival(atMs, mediaSecs) {
      this.transits.add(atMs, atMs - mediaSecs * 1000);
    }

    clear() {
      this.transits.clear();
    }

    // Seconds of lateness that 99% of the recent arrivals stayed within (0 when too few).
    seconds(nowMs) {
      const s = this.transits.summary(nowMs);
      return s.count < JITTER_MIN_SAMPLES ? 0 : (s.p99 - s.min) / 1000;
    }
  }

  // An NTP timestamp (seconds since 1900 and a 32-bit fraction, as in a `prft` box) as Unix ms.
  function ntpToUnixMs(seconds, fraction) {
    return (seconds - 2208988800) * 1000 + (fraction / 2 ** 32) * 1000;
  }

  const api = { targetMargin, parseOverride, RateController, farBehind, Window, Jitter, ntpToUnixMs };
  if (typeof module === 'object' && module.exports) module.exports = api;
  else root.ssecastLatency = api;
})(globalThis);
