// ssecast viewer: plays the server's live Server-Sent Events stream with Media Source Extensions.
//
// The page at `/` plays the default stream (`/events`) and links to the others (`/api/streams`);
// at `/NAME` it plays stream NAME (`/events/NAME`).
//
// The stream (see DESIGN.md): `init` {mime, init: base64 ftyp+moov, width, height, bitrate,
// duration}, then one `data` event per fragment (id "<sequence>.<ms it went live>", base64
// moof+mdat that starts with a keyframe), and `reset` {skipped} when the server dropped fragments
// for this viewer. A stream that is not live sends `offline` {reason} instead of `init`, or after
// its publisher left: the page says so and waits on the same connection for the next `init`.
// EventSource reconnects by itself and sends Last-Event-ID; the server resumes without a gap when
// it still has that fragment, and every connection starts with `init` or `offline`.
//
// Fragments are appended in `segments` mode, so each lands where its tfdt says. The player keeps
// a small target delay behind the live edge (web/latency.js: about 0.1 s of margin with
// one-frame parts, 0.3 s with whole-GOP fragments, `?latency=SECONDS` to choose) by playing
// slightly faster or slower, and seeks only when far behind; it jumps over holes (reset,
// reconnect gaps), shifts the timeline when a restarted server starts its clock again, and evicts
// what was played so memory stays bounded. It measures its own delay: from a fragment going live
// on the server (the ms in its id) to its first frame being presented, and from the encoder's
// wall clock (a `prft` box before the moof) to the same frame. `window.ssecast` exposes that,
// counters and every media error, for tests and for curious humans.
'use strict';

(() => {
  const KEEP_BEHIND = 30; // seconds of already-played media kept buffered
  const EVICT_SLACK = 10; // evict only once this much more has piled up, to batch removals
  const DELAY_WINDOW_MS = 60000; // the delay statistics cover the last minute
  const MAX_AWAITING = 600; // appended fragments whose first frame is yet to be presented
  const HOLE = 0.5; // a hole between fragments wider than this (seconds) is a gap, not jitter
  const FROZEN = 1; // seconds the playhead may run on without a new video frame
  // Fragments waiting for the SourceBuffer before the oldest are dropped: this many, or this many
  // seconds of them when they are short (one-frame parts come 30 a second).
  const MAX_PENDING = 30;
  const MAX_PENDING_SECS = 10;
  const RECONNECT_MS = 2000; // after the browser gave up on the stream (e.g. an HTTP error)
  const TICK_MS = 250;
  const STREAMS_MS = 10000; // how often `/` refreshes its links to the other streams
  const NAME = /^[A-Za-z0-9_-]{1,64}$/;

  const video = document.getElementById('video');
  const statusLine = document.getElementById('status');
  const message = document.getElementById('message');
  const sound = document.getElementById('sound');
  const nav = document.getElementById('streams');

  // `/` (or `/index.html`) is the default stream, `/NAME` stream NAME. The server only serves the
  // page at such paths, so anything else is treated as the default.
  const path = location.pathname.slice(1);
  const named = NAME.test(path) ? path : null;
  const eventsUrl = named ? `/events/${named}` : '/events';

  const latency = window.ssecastLatency;
  const override = latency.parseOverride(location.search);

  const debug = {
    state: 'connecting', // connecting | connected | offline | reconnecting | error | unsupported
    stream: named, // the stream's name (at `/`, the default's once `/api/streams` said it)
    inits: 0, // `init` events received
    offlines: 0, // `offline` events received
    offlineReason: '', // what the newest `offline` said
    errors: [], // every MediaSource / SourceBuffer / video error, as text
    appended: 0, // data fragments appended
    resets: 0, // `reset` events received
    seeks: 0, // seeks the player made (start, holes, live edge)
    lastSeek: '', // why it made the last one
    seekReasons: {}, // seeks by why: {start: 1, 'live edge': 2, ...}
    shifts: 0, // timeline shifts after a restarted server's clock went back
    mediaSources: 0, // MediaSources created (the first one plus every re-init)
    stalls: 0, // `waiting` events once playing, not counting those of a seek
    dropped: 0, // fragments dropped because the browser's buffer was full or the queue too long
    lastId: '', // id of the newest data event
    margin: null, // seconds that were buffered ahead when the newest fragment arrived
    behind: null, // seconds behind the live edge
    ahead: null, // seconds buffered ahead of the playhead
    target: null, // the margin the player aims for (s)
    jitter: 0, // how late recent fragments arrived, at worst (99%), which raises the target (s)
    fragment: null, // the video fragments' length (s), measured
    rate: 1, // the playback rate the player set
    // Seconds from a fragment going live on the server (its id) to its first presented frame,
    // and from the encoder's clock (prft) to it: {current, p50, p95, p99, max, count} over the
    // last minute (all null before the first sample).
    delay: null,
    encoderDelay: null,
    firstFrameMs: null, // ms from the page starting to load to its first presented frame
    // The way there, in ms since the page began loading (the first of each, null until then):
    // script (player.js runs), open (EventSource), init, sourceOpen, firstData (first `data`
    // event), firstAppended, start (the start seek, or playing in place), seeked, firstFrame.
    timings: {},
    startSkip: null, // seconds from the newest keyframe to where the page started playing
    // Starts the delay statistics over (the latency benchmark does, after its warm-up).
    clearDelays() {
      delays.clear();
      encoderDelays.clear();
    },
  };
  window.ssecast = debug;

  let events = null; // the EventSource
  let stream = null; // the current `init` payload
  let track = null; // {id, timescale} of the track whose tfdt places a fragment
  let mediaSource = null;
  let buffer = null; // the SourceBuffer of mediaSource
  let objectUrl = null;
  let ops = []; // pending SourceBuffer operations, oldest first
  let busy = null; // the operation the SourceBuffer is working on
  let resetSeen = false; // a `reset` came: the next data event starts after a hole
  let holeNext = false; // a fragment was dropped here: the next one starts after a hole
  let newest = null; // {start, liveMs} of the newest appended fragment, for the latency
  let blocked = false; // the browser refused to autoplay: wait for a tap
  let holeTimer = null; // set while a seek over a hole ahead is scheduled
  let frames = 0; // video frames decoded so far, to notice a frozen picture...
  let framesAt = 0; // ...and the playhead when that count last changed
  let recoveries = []; // when the MediaSource was re-created after recent errors
  const controller = new latency.RateController();
  const jitter = new latency.Jitter();
  let lastVideoStart = null; // where the previous video fragment started, for its length
  let starting = false; // the first fragments are coming in: seek to the newest when they are
  let awaiting = []; // {start, liveMs, prftMs} appended, oldest first, first frame not yet shown
  let presented = false; // a frame has been presented (stalls count from then on)
  const delays = new latency.Window(DELAY_WINDOW_MS);
  const encoderDelays = new latency.Window(DELAY_WINDOW_MS);
  // At `/`: the server picks the default stream when the connection opens and keeps the viewer
  // on it even when another stream becomes the default later, so its name is learnt from
  // `/api/streams` once per connection, not on every refresh.
  let learnDefault = !named;

  // Notes when something first happened on the way to the first picture.
  function mark(what) {
    if (!(what in debug.timings)) debug.timings[what] = Math.round(performance.now());
  }

  function record(what) {
    debug.errors.push(what);
    console.error('ssecast:', what);
  }

  function setState(state) {
    debug.state = state;
    showStatus();
  }

  function showMessage(text) {
    message.textContent = text;
    message.hidden = false;
  }

  // What to call the stream in messages.
  function streamName() {
    return debug.stream || 'the stream';
  }

  // The stream is not live: it never was on this page, or its publisher left.
  function offlineText() {
    const reason = debug.offlineReason || 'not live';
    return debug.inits
      ? `${streamName()} is offline: ${reason} — waiting for it to come back`
      : `waiting for ${streamName()}: ${reason}`;
  }

  // Stops for good: the page cannot play this stream.
  function giveUp(state, text) {
    showMessage(text);
    setState(state);
    if (events) events.close();
    closeMediaSource();
  }

  function fromBase64(text) {
    if (Uint8Array.fromBase64) return Uint8Array.fromBase64(text);
    const bin = atob(text);
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }

  // ---- MP4 boxes: just enough to know where each fragment starts on the timeline ----

  // Calls visit(type, payloadStart, end) for every box in bytes[from, to).
  function boxes(bytes, view, from, to, visit) {
    let p = from;
    while (p + 8 <= to) {
      let size = view.getUint32(p);
      let head = 8;
      if (size === 1) {
        size = view.getUint32(p + 8) * 2 ** 32 + view.getUint32(p + 12);
        head = 16;
      } else if (size === 0) {
        size = to - p;
      }
      if (size < head || p + size > to) return;
      const type = String.fromCharCode(bytes[p + 4], bytes[p + 5], bytes[p + 6], bytes[p + 7]);
      visit(type, p + head, p + size);
      p += size;
    }
  }

  function viewOf(bytes) {
    return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  // The video track of an init segment (or its first track): {id, timescale}, or null.
  function findTrack(init) {
    const view = viewOf(init);
    const tracks = [];
    try {
      boxes(init, view, 0, init.length, (type, s, e) => {
        if (type !== 'moov') return;
        boxes(init, view, s, e, (type, s, e) => {
          if (type !== 'trak') return;
          const t = { id: 0, timescale: 0, handler: '' };
          boxes(init, view, s, e, (type, s, e) => {
            // tkhd and mdhd: version 1 has 64-bit times before the field we want.
            if (type === 'tkhd') t.id = view.getUint32(s + (init[s] === 1 ? 20 : 12));
            if (type !== 'mdia') return;
            boxes(init, view, s, e, (type, s) => {
              if (type === 'mdhd') t.timescale = view.getUint32(s + (init[s] === 1 ? 20 : 12));
              if (type === 'hdlr') t.handler = String.fromCharCode(...init.subarray(s + 8, s + 12));
            });
          });
          tracks.push(t);
        });
      });
    } catch (e) {
      return null; // a truncated box: play without timeline checks
    }
    const t = tracks.find((t) => t.handler === 'vide') || tracks[0];
    return t && t.timescale ? t : null;
  }

  // Where a fragment starts (its tfdt for `track`, in seconds), or null if it cannot tell.
  function fragmentStart(frag) {
    if (!track) return null;
    const view = viewOf(frag);
    let ticks = null;
    try {
      boxes(frag, view, 0, frag.length, (type, s, e) => {
        if (type !== 'moof') return;
        boxes(frag, view, s, e, (type, s, e) => {
          if (type !== 'traf') return;
          let id = 0;
          let time = null;
          boxes(frag, view, s, e, (type, s) => {
            if (type === 'tfhd') id = view.getUint32(s + 4);
            if (type === 'tfdt') {
              time = frag[s] === 1
                ? view.getUint32(s + 4) * 2 ** 32 + view.getUint32(s + 8)
                : view.getUint32(s + 4);
            }
          });
          if (id === track.id && time !== null && ticks === null) ticks = time;
        });
      });
    } catch (e) {
      return null;
    }
    return ticks === null ? null : ticks / track.timescale;
  }

  // The encoder's wall clock for a fragment (a top-level `prft` before its moof), in Unix ms, or
  // null when it has none.
  function prftMs(frag) {
    const view = viewOf(frag);
    let ms = null;
    try {
      boxes(frag, view, 0, frag.length, (type, s, e) => {
        if (type === 'prft' && ms === null && e - s >= 16) {
          ms = latency.ntpToUnixMs(view.getUint32(s + 8), view.getUint32(s + 12));
        }
      });
    } catch (e) {
      return null;
    }
    return ms;
  }

  // ---- MediaSource and SourceBuffer ----

  function openMediaSource() {
    closeMediaSource();
    // Safari on iOS 17.1+ only has ManagedMediaSource; elsewhere it is the same API.
    const MS = window.ManagedMediaSource || window.MediaSource;
    if (!MS) {
      giveUp('unsupported', 'This browser cannot play live video (no Media Source Extensions).');
      return;
    }
    if (!MS.isTypeSupported(stream.mime)) {
      giveUp('unsupported', `This browser cannot play this stream's format (${stream.mime}).`);
      return;
    }
    // A ManagedMediaSource only plays with remote playback off (or an AirPlay alternative).
    if (MS === window.ManagedMediaSource) video.disableRemotePlayback = true;
    const ms = new MS();
    mediaSource = ms;
    debug.mediaSources++;
    ms.addEventListener('sourceopen', () => {
      mark('sourceOpen');
      if (ms !== mediaSource) return;
      let sb;
      try {
        sb = ms.addSourceBuffer(stream.mime);
        sb.mode = 'segments';
      } catch (e) {
        record(`addSourceBuffer: ${e.name}: ${e.message}`);
        giveUp('error', `This browser refused the stream's format (${stream.mime}).`);
        return;
      }
      buffer = sb;
      sb.addEventListener('updateend', onUpdateEnd);
      sb.addEventListener('error', () => {
        if (sb === buffer) record('SourceBuffer error (the browser could not parse a fragment)');
      });
      ops.unshift({ bytes: fromBase64(stream.init) });
      pump();
    });
    objectUrl = URL.createObjectURL(ms);
    video.src = objectUrl;
  }

  function closeMediaSource() {
    if (buffer) buffer.removeEventListener('updateend', onUpdateEnd);
    mediaSource = null;
    buffer = null;
    ops = [];
    busy = null;
    newest = null;
    holeNext = false;
    lastVideoStart = null;
    starting = false;
    awaiting = [];
    jitter.clear();
    setRate(controller.reset());
    if (objectUrl) URL.revokeObjectURL(objectUrl);
    objectUrl = null;
  }

  // Starts the next operation if the SourceBuffer is idle.
  function pump() {
    while (buffer && mediaSource.readyState === 'open' && !buffer.updating && ops.length) {
      const op = ops[0];
      try {
        if (op.remove) {
          buffer.remove(op.remove[0], op.remove[1]);
        } else {
          if (op.fragment && !op.placed) place(op);
          buffer.appendBuffer(op.bytes);
        }
        ops.shift();
        busy = op;
        return;
      } catch (e) {
        if (e.name === 'QuotaExceededError' && !op.remove) {
          makeRoom(op);
        } else {
          ops.shift();
          record(`${op.remove ? 'remove' : 'appendBuffer'}: ${e.name}: ${e.message}`);
        }
      }
    }
  }

  function onUpdateEnd() {
    const op = busy;
    busy = null;
    if (op && op.fragment) {
      debug.appended++;
      mark('firstAppended');
      if (op.start !== null) {
        newest = { start: op.start, liveMs: op.liveMs };
        awaiting.push({ start: op.start, liveMs: op.liveMs, prftMs: op.prftMs });
        if (awaiting.length > MAX_AWAITING) awaiting.shift();
      }
      const at = op.start === null ? video.currentTime : op.start;
      if (op.jump && op.first) starting = true;
      else if (op.jump) jumpTo(at, 'hole');
    }
    // A new viewer gets the newest keyframe and every part after it at once: start at the
    // newest point, near the live edge, once they are all in (with one fragment, at its start).
    if (starting && !ops.some((o) => o.fragment)) {
      starting = false;
      const r = buffer.buffered;
      if (r.length) {
        const at = startAt(r);
        debug.startSkip = at - r.start(r.length - 1);
        mark('start');
        jumpTo(at, 'start');
      }
    }
    pump();
  }

  // Where a new viewer starts: so that when the next fragment comes (one fragment length after
  // the newest went live, by the server's clock in its id) the margin is the target.
  function startAt(r) {
    const last = r.length - 1;
    const frag = debug.fragment || r.end(last) - r.start(last);
    const sinceLive = newest ? Math.min(frag, Math.max(0, (Date.now() - newest.liveMs) / 1000)) : 0;
    return Math.max(r.start(last), r.end(last) - target() - (frag - sinceLive));
  }

  // The margin to keep, and what is buffered ahead of the playhead on average with it.
  function target() {
    return latency.targetMargin(debug.fragment, override, debug.jitter);
  }

  function targetAhead() {
    return target() + (debug.fragment || 0);
  }

  function setRate(rate) {
    debug.rate = rate;
    if (video.playbackRate !== rate) video.playbackRate = rate;
  }

  // Decides where a fragment goes, just before it is appended (the SourceBuffer is idle, so
  // `buffered` holds everything before it), and whether to jump to it once it is in.
  function place(op) {
    op.placed = true;
    const r = buffer.buffered;
    const end = r.length ? r.end(r.length - 1) : null;
    op.first = end === null;
    op.jump = op.first || op.afterReset || holeNext;
    holeNext = false;
    if (op.time === null || end === null) {
      if (op.time !== null) {
        op.start = op.time + buffer.timestampOffset;
        measureFragment(op.start);
      }
      return;
    }
    let start = op.time + buffer.timestampOffset;
    if (start < end - HOLE) {
      // Time went backwards: the server restarted with the same file and its clock began
      // again. Move the new timeline to carry on where ours ends, so playback just continues.
      buffer.timestampOffset = end - op.time;
      start = end;
      debug.shifts++;
      jitter.clear();
    }
    op.start = start;
    if (start > end + HOLE) op.jump = true;
    measureFragment(start);
    if (!op.jump) keepMargin(end, op);
  }

  // The video fragments' length, from where consecutive ones start (smoothed: encoders and
  // `frag_duration` vary it a little).
  function measureFragment(start) {
    const d = lastVideoStart === null ? null : start - lastVideoStart;
    lastVideoStart = start;
    if (d === null || d <= 0 || d > 30) return;
    debug.fragment = debug.fragment === null ? d : debug.fragment + 0.2 * (d - debug.fragment);
  }

  // Fragments arrive whole: what is buffered ahead just before one arrives is the margin that
  // absorbs network jitter, and the delay a viewer sees. Play slightly faster while it is above
  // the target and slightly slower while it is below (pitch is kept).
  function keepMargin(end, op) {
    if (video.paused || video.seeking || starting) return;
    const now = performance.now();
    jitter.arrival(op.arrivedMs, op.start);
    debug.jitter = jitter.seconds(now);
    debug.target = target();
    const margin = end - video.currentTime;
    debug.margin = margin;
    setRate(controller.arrival(now, margin, debug.target, debug.fragment));
  }

  // The browser's buffer is full: remove what was played (keeping a second before the playhead)
  // and retry once; if nothing can go, drop this fragment and jump the hole it leaves.
  function makeRoom(op) {
    const r = buffer.buffered;
    const to = video.currentTime - 1;
    if (!op.retried && r.length && to - r.start(0) > HOLE) {
      op.retried = true;
      ops.unshift({ remove: [0, to] });
    } else {
      ops.shift();
      debug.dropped++;
      holeNext = true;
    }
  }

  // Seeks to t, or to the start of the first buffered range after t when t is in a hole, unless
  // the playhead is already in that range at or past t.
  function jumpTo(t, why) {
    const r = buffer.buffered;
    for (let i = 0; i < r.length; i++) {
      if (r.end(i) <= t) continue;
      const target = Math.max(t, r.start(i));
      const now = video.currentTime;
      if (now < target - 0.1 || now >= r.end(i)) seek(target, why);
      return;
    }
  }

  function seek(t, why) {
    debug.seeks++;
    debug.lastSeek = why;
    debug.seekReasons[why] = (debug.seekReasons[why] || 0) + 1;
    setRate(controller.reset());
    jitter.clear();
    video.currentTime = t;
    play();
  }

  function play() {
    if (!video.paused) return;
    const p = video.play();
    if (!p) return;
    p.then(
      () => {
        blocked = false;
        showSound();
      },
      (e) => {
        // AbortError only means a new source or seek interrupted it.
        if (e.name === 'NotAllowedError') {
          blocked = true;
          showSound();
        }
      },
    );
  }

  // ---- the stream ----

  function connect() {
    // A page cannot set Last-Event-ID on a fresh EventSource, so a manual reconnect says it in
    // the URL; the browser's own reconnects send the header, which the server prefers.
    const id = debug.lastId;
    const url = id ? `${eventsUrl}?last_event_id=${encodeURIComponent(id)}` : eventsUrl;
    const es = new EventSource(url);
    events = es;
    es.addEventListener('open', () => {
      mark('open');
      setState('connected');
      if (!named) {
        learnDefault = true;
        refreshStreams();
      }
    });
    es.addEventListener('error', () => {
      if (es !== events || debug.state === 'unsupported' || debug.state === 'error') return;
      setState('reconnecting');
      if (es.readyState === EventSource.CLOSED) setTimeout(connect, RECONNECT_MS);
    });
    es.addEventListener('init', onInit);
    es.addEventListener('offline', onOffline);
    es.addEventListener('data', onData);
    es.addEventListener('reset', () => {
      debug.resets++;
      resetSeen = true;
    });
  }

  function onInit(e) {
    let info;
    try {
      info = JSON.parse(e.data);
    } catch (err) {
      record(`init event is not JSON: ${err.message}`);
      return;
    }
    debug.inits++;
    mark('init');
    message.hidden = true;
    setState('connected');
    const same = stream && mediaSource && info.init === stream.init && info.mime === stream.mime;
    stream = info;
    // A reconnect to the same stream, or a publisher back with the same encoder settings, keeps
    // the MediaSource: data carries on (or `place` notices a new timeline). Another file or
    // other settings mean another init segment, maybe other codecs: start over.
    if (same) return;
    track = findTrack(fromBase64(info.init));
    openMediaSource();
  }

  // The stream is not live. The connection stays open and the next `init` starts it again; until
  // then the MediaSource (and the last picture) stay, in case that `init` is the same.
  function onOffline(e) {
    let info = {};
    try {
      info = JSON.parse(e.data) || {};
    } catch (err) {
      // Still offline; there is just no reason to show.
    }
    debug.offlines++;
    debug.offlineReason = typeof info.reason === 'string' ? info.reason : '';
    showMessage(offlineText());
    setState('offline');
  }

  function onData(e) {
    debug.lastId = e.lastEventId;
    mark('firstData');
    if (!mediaSource) return;
    const liveMs = Number(e.lastEventId.split('.')[1]) || Date.now();
    const bytes = fromBase64(e.data);
    const time = fragmentStart(bytes);
    const prft = prftMs(bytes);
    ops.push({
      fragment: true,
      bytes,
      time,
      liveMs,
      prftMs: prft,
      arrivedMs: performance.now(),
      start: null,
      afterReset: resetSeen,
    });
    resetSeen = false;
    const pending = ops.filter((op) => op.fragment);
    // Until a fragment is appended their length is unknown; a new viewer's backlog of parts (a
    // keyframe and up to a GOP after it) can pile up while the MediaSource opens, and dropping
    // its keyframe would leave nothing to decode until the next one.
    const secs = debug.fragment || pendingLength(pending) || 1;
    const most = Math.max(MAX_PENDING, MAX_PENDING_SECS / secs);
    if (pending.length > most) {
      ops.splice(ops.indexOf(pending[0]), 1);
      debug.dropped++;
      holeNext = true;
    }
    pump();
  }

  // The length of the pending fragments, from their media times (null when it cannot tell).
  function pendingLength(pending) {
    const n = pending.length;
    if (n < 2 || pending[0].time === null || pending[n - 1].time === null) return null;
    const d = (pending[n - 1].time - pending[0].time) / (n - 1);
    return d > 0 ? d : null;
  }

  // ---- keeping up: runs a few times a second ----

  function tick() {
    if (buffer && mediaSource.readyState === 'open' && !buffer.updating && !video.seeking) {
      keepUp();
      watchFrames();
      evict();
    }
    showStatus();
  }

  // A paused video (a script, a phone's media controls) is left alone: once it plays again it is
  // far behind and seeks. So is the start, which seeks by itself once the first fragments are in.
  function keepUp() {
    const r = buffer.buffered;
    if (!r.length || starting || (video.paused && !blocked && presented)) return;
    const now = video.currentTime;
    const last = r.length - 1;
    if (latency.farBehind(r.end(last) - now, target(), debug.fragment)) {
      seek(Math.max(r.end(last) - targetAhead(), r.start(last)), 'live edge');
      return;
    }
    let inside = -1;
    let next = -1;
    for (let i = 0; i < r.length; i++) {
      if (now >= r.start(i) && now < r.end(i)) inside = i;
      if (next < 0 && r.start(i) > now) next = i;
    }
    if (next < 0) return; // at the live edge: nothing to jump to, the next fragment will come
    if (inside < 0) {
      seek(r.start(next), 'hole');
      return;
    }
    // Where a file loops, or a fragment's first frames are presented a little after its start,
    // the new fragment can replace the old one's last frames and leave a hole of a few frames.
    // The video decoder stops at such a hole while audio plays on, so seek over it just in time.
    const untilHole = (r.end(inside) - now) / (video.playbackRate || 1);
    if (!holeTimer && untilHole < (2 * TICK_MS) / 1000) {
      holeTimer = setTimeout(skipHole, Math.max(0, untilHole * 1000 - 20));
    }
  }

  // Runs when the playhead is about to reach a hole between two buffered ranges.
  function skipHole() {
    holeTimer = null;
    if (!buffer || video.seeking || video.paused) return;
    const r = buffer.buffered;
    const now = video.currentTime;
    for (let i = 0; i + 1 < r.length; i++) {
      if (now >= r.start(i) && now < r.end(i) + HOLE && r.end(i) - now < 0.1) {
        seek(r.start(i + 1), 'hole');
        return;
      }
    }
  }

  // The video decoder can stall (a hole in the video track alone, a decoder hiccup) while the
  // audio clock, and so currentTime, runs on with a frozen picture. A seek restarts it. Hidden
  // pages are left alone: browsers stop decoding video there on purpose.
  function watchFrames() {
    const q = video.getVideoPlaybackQuality ? video.getVideoPlaybackQuality() : null;
    if (!q || !video.videoWidth) return;
    const now = video.currentTime;
    const idle = video.paused || video.seeking || video.readyState < 3 || document.hidden;
    if (idle || q.totalVideoFrames !== frames) {
      frames = q.totalVideoFrames;
      framesAt = now;
    } else if (now - framesAt > FROZEN) {
      framesAt = now;
      seek(now, 'frozen video');
    }
  }

  function evict() {
    const r = buffer.buffered;
    const keepFrom = video.currentTime - KEEP_BEHIND;
    if (!r.length || keepFrom - r.start(0) < EVICT_SLACK || ops.some((op) => op.remove)) return;
    ops.push({ remove: [0, keepFrom] });
    pump();
  }

  // ---- the delay: from going live to the first presented frame of each fragment ----

  // Called for every presented video frame. The fragments appended before it and starting at or
  // before its media time are done with; the newest of them had its first frame presented now
  // (unless an earlier frame of it was: then it was measured already and is gone).
  function onFrame(now, meta) {
    video.requestVideoFrameCallback(onFrame);
    if (!presented) {
      debug.firstFrameMs = Math.round(now);
      debug.timings.firstFrame = debug.firstFrameMs;
    }
    presented = true;
    const at = meta.mediaTime + 0.001; // media times are rounded to microseconds
    let shown = null;
    while (awaiting.length && awaiting[0].start <= at) shown = awaiting.shift();
    if (!shown) return;
    const wallMs = performance.timeOrigin + (meta.presentationTime || now);
    delays.add(wallMs, (wallMs - shown.liveMs) / 1000);
    if (shown.prftMs !== null) encoderDelays.add(wallMs, (wallMs - shown.prftMs) / 1000);
  }

  function showDelay() {
    const nowMs = performance.timeOrigin + performance.now();
    debug.delay = delays.summary(nowMs);
    debug.encoderDelay = encoderDelays.summary(nowMs);
  }

  // ---- what the viewer sees ----

  function bufferedAhead() {
    if (!buffer) return null;
    const r = buffer.buffered;
    const now = video.currentTime;
    for (let i = 0; i < r.length; i++) {
      if (now >= r.start(i) && now <= r.end(i)) return r.end(i) - now;
    }
    return 0;
  }

  function showStatus() {
    let text;
    let tone = '';
    if (debug.state === 'connected' && stream) {
      debug.ahead = bufferedAhead();
      showDelay();
      // The newest fragment's start went live at liveMs (server clock) and time runs at 1x.
      debug.behind = newest
        ? Math.max(0, newest.start - video.currentTime + (Date.now() - newest.liveMs) / 1000)
        : null;
      const waiting = video.readyState < 3 || video.paused;
      const parts = [waiting ? (blocked ? 'paused' : 'buffering') : 'live'];
      parts.push(`${video.videoWidth || stream.width}×${video.videoHeight || stream.height}`);
      if (stream.bitrate) parts.push(`${Math.round(stream.bitrate / 1000)} kb/s`);
      if (debug.delay && debug.delay.current !== null) {
        parts.push(`delay ${debug.delay.current.toFixed(2)} s`);
      } else if (debug.behind !== null) {
        parts.push(`${debug.behind.toFixed(1)} s behind live`);
      }
      if (debug.ahead !== null) parts.push(`${debug.ahead.toFixed(1)} s buffered`);
      text = parts.map((part) => part.replaceAll(' ', '\u00a0')).join(' · '); // wrap between parts
      if (waiting) tone = 'warn';
    } else if (debug.state === 'connected' || debug.state === 'connecting') {
      text = 'connecting…';
    } else if (debug.state === 'offline') {
      text = offlineText();
      tone = 'warn';
    } else if (debug.state === 'reconnecting') {
      text = 'connection lost, reconnecting…';
      tone = 'warn';
    } else {
      text = `error: ${message.textContent}`;
      tone = 'bad';
    }
    statusLine.textContent = text;
    statusLine.className = tone;
  }

  // ---- the other streams ----

  function showTitle() {
    document.title = debug.stream ? `${debug.stream} · ssecast` : 'ssecast';
  }

  function link(href, text) {
    const a = document.createElement('a');
    a.href = href;
    a.textContent = text;
    return a;
  }

  // At `/`: links to every stream but the one shown here, live ones marked. A failed request
  // leaves no links (the page plays on without them).
  function refreshStreams() {
    fetch('/api/streams', { cache: 'no-store' })
      .then((r) => (r.ok ? r.json() : Promise.reject(new Error(`HTTP ${r.status}`))))
      .then((list) => {
        if (!Array.isArray(list)) throw new Error('not a list');
        const shown = list.find((s) => s && s.default);
        if (learnDefault && shown && NAME.test(shown.name)) {
          learnDefault = false;
          debug.stream = shown.name;
          showTitle();
          if (debug.state === 'offline') showMessage(offlineText());
        }
        const others = list.filter((s) => s && NAME.test(s.name) && s.name !== debug.stream);
        nav.replaceChildren(
          ...others.map((s) => {
            const a = link(`/${s.name}`, s.name);
            if (s.live) {
              a.className = 'live';
              a.title = 'live';
            }
            return a;
          }),
        );
        nav.hidden = !others.length;
      })
      .catch(() => {
        nav.replaceChildren();
        nav.hidden = true;
      });
  }

  function showSound() {
    sound.textContent = blocked ? 'Play' : video.muted ? 'Unmute' : 'Mute';
  }

  sound.addEventListener('click', () => {
    // The tap is a user gesture, so playing with sound is allowed now.
    if (blocked) {
      blocked = false;
      video.muted = false;
      play();
    } else {
      video.muted = !video.muted;
    }
    showSound();
  });

  video.addEventListener('volumechange', showSound);
  video.addEventListener('seeked', () => mark('seeked'));
  video.addEventListener('waiting', () => {
    if (presented && !video.seeking) debug.stalls++;
  });
  // Back from a pause (or a hidden tab): catch up at once rather than on the next tick.
  video.addEventListener('play', tick);
  document.addEventListener('visibilitychange', tick);
  video.addEventListener('error', () => {
    const err = video.error;
    if (!err || !mediaSource) return;
    record(`video error ${err.code}: ${err.message || 'no details'}`);
    // Decoding failed and the MediaSource is dead. Start a new one with the same init: the next
    // fragment starts with a keyframe. Give up if it keeps happening.
    const now = Date.now();
    recoveries = recoveries.filter((t) => now - t < 60000);
    if (recoveries.length >= 3) {
      giveUp('error', 'This video keeps failing to decode; reload the page to try again.');
      return;
    }
    recoveries.push(now);
    openMediaSource();
  });

  mark('script');
  video.muted = true;
  video.preservesPitch = true;
  if (video.requestVideoFrameCallback) video.requestVideoFrameCallback(onFrame);
  showSound();
  showTitle();
  if (named) {
    nav.replaceChildren(link('/', '← all streams'));
    nav.hidden = false;
  } else {
    setInterval(refreshStreams, STREAMS_MS);
  }
  connect();
  setInterval(tick, TICK_MS);
})();
