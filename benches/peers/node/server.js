#!/usr/bin/env node
// Node.js peer for benches/compare.sh: the design from the "live video over SSE" article.
//
// An http server and an EventEmitter: a timer emits each fragment (moof + mdat) of a fragmented MP4
// at real-time pace (or --speed times faster), looping, and every connected client has its own
// listener that base64-encodes the fragment and writes an SSE event to its response. The
// per-client encoding (and write with no backpressure) is the point: it is the design ssecast's
// encode-once fan-out is compared against. tfdt is not rewritten on loop.
//
//   node benches/peers/node/server.js [--port 8083] [--host 127.0.0.1] [--speed 1] [VIDEO]
//
// Node's standard library only.
'use strict';

const fs = require('fs');
const http = require('http');
const path = require('path');
const { EventEmitter } = require('events');

function parseArgs(argv) {
  const opts = {
    port: 8083,
    host: '127.0.0.1',
    speed: 1,
    video: path.join(__dirname, '..', '..', '..', 'web', 'sample.mp4'),
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--port') opts.port = Number(value());
    else if (a === '--host') opts.host = value();
    else if (a === '--speed') opts.speed = Number(value());
    else if (a === '-h' || a === '--help') {
      console.log('usage: server.js [--port 8083] [--host 127.0.0.1] [--speed 1] [VIDEO]');
      process.exit(0);
    } else if (a.startsWith('-')) throw new Error(`unknown option ${a}`);
    else opts.video = a;
  }
  if (!(opts.speed > 0)) throw new Error('--speed must be > 0');
  if (!Number.isInteger(opts.port) || opts.port < 0 || opts.port > 65535) {
    throw new Error('--port must be 0..65535');
  }
  return opts;
}

// --- MP4 box parsing: just enough to split fragments and know their durations. ---

function* boxes(buf, start = 0, end = buf.length) {
  let pos = start;
  while (pos + 8 <= end) {
    let size = buf.readUInt32BE(pos);
    const type = buf.toString('latin1', pos + 4, pos + 8);
    let header = 8;
    if (size === 1) {
      if (pos + 16 > end) break;
      size = Number(buf.readBigUInt64BE(pos + 8));
      header = 16;
    } else if (size === 0) {
      size = end - pos;
    }
    if (size < header || pos + size > end) break;
    yield { type, start: pos, payload: pos + header, end: pos + size };
    pos += size;
  }
}

function child(buf, box, type) {
  for (const b of boxes(buf, box.payload, box.end)) if (b.type === type) return b;
  return null;
}

function trackInfo(buf, moov) {
  const timescales = new Map();
  const trex = new Map();
  for (const b of boxes(buf, moov.payload, moov.end)) {
    if (b.type === 'trak') {
      const tkhd = child(buf, b, 'tkhd');
      const mdia = child(buf, b, 'mdia');
      const mdhd = mdia && child(buf, mdia, 'mdhd');
      if (!tkhd || !mdhd) continue;
      const trackId = buf.readUInt32BE(tkhd.payload + (buf[tkhd.payload] === 1 ? 20 : 12));
      const timescale = buf.readUInt32BE(mdhd.payload + (buf[mdhd.payload] === 1 ? 20 : 12));
      timescales.set(trackId, timescale);
    } else if (b.type === 'mvex') {
      for (const t of boxes(buf, b.payload, b.end)) {
        if (t.type === 'trex') trex.set(buf.readUInt32BE(t.payload + 4), buf.readUInt32BE(t.payload + 12));
      }
    }
  }
  return { timescales, trex };
}

// Duration in seconds of a fragment's first track run (the video track in ffmpeg's output).
function fragmentSeconds(buf, moof, info) {
  const traf = child(buf, moof, 'traf');
  const tfhd = traf && child(buf, traf, 'tfhd');
  if (!tfhd) return null;
  const flags = buf.readUInt32BE(tfhd.payload) & 0xffffff;
  const trackId = buf.readUInt32BE(tfhd.payload + 4);
  let off = tfhd.payload + 8 + (flags & 0x01 ? 8 : 0) + (flags & 0x02 ? 4 : 0);
  let dflt = info.trex.get(trackId) || 0;
  if (flags & 0x08) dflt = buf.readUInt32BE(off);
  let total = 0;
  for (const b of boxes(buf, traf.payload, traf.end)) {
    if (b.type !== 'trun') continue;
    const tflags = buf.readUInt32BE(b.payload) & 0xffffff;
    const count = buf.readUInt32BE(b.payload + 4);
    let p = b.payload + 8 + (tflags & 0x01 ? 4 : 0) + (tflags & 0x04 ? 4 : 0);
    let perSample = 0;
    for (const bit of [0x100, 0x200, 0x400, 0x800]) if (tflags & bit) perSample += 4;
    for (let i = 0; i < count; i++) {
      total += tflags & 0x100 ? buf.readUInt32BE(p) : dflt;
      p += perSample;
    }
  }
  const timescale = info.timescales.get(trackId);
  return timescale && total ? total / timescale : null;
}

// Returns { init: Buffer, fragments: [{ data: Buffer, seconds }] }.
function split(buf) {
  const top = [...boxes(buf)];
  const moov = top.find((b) => b.type === 'moov');
  const firstMoof = top.find((b) => b.type === 'moof');
  if (!moov || !firstMoof) {
    throw new Error('not a fragmented MP4 (need moov + moof); remux with ' +
      'ffmpeg -movflags frag_keyframe+empty_moov+default_base_moof');
  }
  const info = trackInfo(buf, moov);
  const fragments = [];
  let cur = null;
  const finish = () => {
    if (!cur) return;
    fragments.push({
      data: buf.subarray(cur.start, cur.end),
      seconds: fragmentSeconds(buf, cur.moof, info) || 1,
    });
    cur = null;
  };
  for (const b of top) {
    if (b.type === 'moof') {
      finish();
      cur = { start: b.start, end: b.end, moof: b };
    } else if (b.type === 'mdat' && cur) {
      cur.end = b.end;
    } else if (b.type === 'mfra' || b.type === 'moov') {
      finish();
    }
  }
  finish();
  return { init: buf.subarray(0, firstMoof.start), fragments };
}

// --- Server ---

function main() {
  const opts = parseArgs(process.argv.slice(2));
  const video = split(fs.readFileSync(opts.video));
  const loopSeconds = video.fragments.reduce((s, f) => s + f.seconds, 0);
  console.error(`node peer: ${video.fragments.length} fragments, ${loopSeconds.toFixed(2)} s per loop, speed ${opts.speed}`);

  const emitter = new EventEmitter();
  emitter.setMaxListeners(0);

  // Playout: emit each fragment when it is due, against absolute deadlines so the pace does not
  // drift with timer lateness.
  let seq = 0;
  let index = 0;
  const start = performance.now();
  let due = 0;
  const tick = () => {
    const frag = video.fragments[index];
    emitter.emit('fragment', frag.data, `${seq}.${Date.now()}`);
    seq += 1;
    index = (index + 1) % video.fragments.length;
    due += (frag.seconds * 1000) / opts.speed;
    setTimeout(tick, Math.max(0, start + due - performance.now()));
  };
  setTimeout(tick, 0);

  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://localhost');
    if (url.pathname !== '/events') {
      res.writeHead(404, { 'Content-Type': 'text/plain' });
      res.end('not found\n');
      return;
    }
    res.writeHead(200, {
      'Content-Type': 'text/event-stream',
      'Cache-Control': 'no-cache',
      Connection: 'keep-alive',
    });
    const init = JSON.stringify({ init: video.init.toString('base64') });
    res.write(`retry: 2000\n\nevent: init\ndata: ${init}\n\n`);
    // Each client encodes every fragment itself.
    const onFragment = (chunk, id) => {
      res.write(`id: ${id}\nevent: data\ndata: ${chunk.toString('base64')}\n\n`);
    };
    emitter.on('fragment', onFragment);
    res.on('close', () => emitter.removeListener('fragment', onFragment));
  });
  server.listen(opts.port, opts.host, 4096, () => {
    const addr = server.address();
    console.error(`node peer: listening on http://${addr.address}:${addr.port}/events`);
  });
  // SSE responses never end, so there is nothing to drain: stop at once.
  process.on('SIGINT', () => process.exit(0));
  process.on('SIGTERM', () => process.exit(0));
}

try {
  main();
} catch (e) {
  console.error(`node peer: ${e.message}`);
  process.exit(1);
}
