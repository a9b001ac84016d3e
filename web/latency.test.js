// Unit tests of web/latency.js, run by node's built-in test runner (`node --test web/`); the
// Rust test `tests/player_js.rs` runs them from `cargo test` and skips when node is missing.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const { targetMargin, parseOverride, RateController, farBehind, Window, Jitter, ntpToUnixMs } =
  require('./latency.js');

test('the target suits the fragments unless the URL overrides it', () => {
  assert.equal(targetMargin(1 / 30, null), 0.1);
  assert.equal(targetMargin(1, null), 0.3);
  assert.equal(targetMargin(null, null), 0.3, 'unknown fragment length: as for long ones');
  assert.equal(targetMargin(1 / 30, 0.5), 0.5);
  assert.equal(targetMargin(1, 0), 0.3, 'a zero override is ignored');
  assert.equal(parseOverride('?latency=0.25'), 0.25);
  assert.equal(parseOverride('?x=1&latency=2'), 2);
  assert.equal(parseOverride('?latency=abc'), null);
  assert.equal(parseOverride('?latency=99'), null, 'over 30 s is not a live delay');
  assert.equal(parseOverride('?mylatency=1'), null);
  assert.equal(parseOverride(''), null);
});

test('jitter raises the target, within bounds', () => {
  assert.equal(targetMargin(1 / 30, null, 0.01), 0.1, 'little jitter: the floor');
  assert.ok(Math.abs(targetMargin(1 / 30, null, 0.2) - 0.23) < 1e-9);
  assert.ok(Math.abs(targetMargin(1 / 30, 0.5, 0.2) - 0.5) < 1e-9, 'the override is a floor');
  assert.equal(targetMargin(1 / 30, null, 5), 1, 'capped');
});

test('jitter is the 99th percentile of lateness on the page clock', () => {
  const j = new Jitter();
  const frame = 1000 / 30;
  // Arrivals every frame, on time, then one 300 ms late (a blocked main thread) and the frames
  // queued behind it in a burst.
  for (let i = 0; i < 300; i++) j.arrival(5000 + i * frame, i / 30);
  assert.ok(j.seconds(5000 + 300 * frame) < 0.001);
  for (let i = 300; i < 310; i++) j.arrival(5000 + 309 * frame + 10, i / 30);
  const late = j.seconds(5000 + 310 * frame);
  assert.ok(late > 0.2 && late < 0.31, `${late}`);
  assert.equal(j.seconds(5000 + 310 * frame + 30000), 0, 'forgotten after 20 s');
  j.arrival(0, 0);
  j.clear();
  assert.equal(j.seconds(0), 0);
});

test('the rate speeds up when too far behind and slows when the buffer runs thin', () => {
  const c = new RateController();
  assert.equal(c.arrival(0, 0.1, 0.1), 1, 'on target');
  assert.equal(c.arrival(1500, 0.11, 0.1), 1, 'within the band');
  assert.equal(new RateController().arrival(0, 0.2, 0.1), 1.05);
  assert.equal(new RateController().arrival(0, 2, 0.1), 1.1, 'far off: faster');
  assert.equal(new RateController().arrival(0, 0.05, 0.1), 0.95);
  assert.equal(new RateController().arrival(0, -5, 0.1), 0.9, 'nearly dry: slower');
});

test('hysteresis: a correction runs until half the band, then the rate stays at 1', () => {
  const c = new RateController();
  assert.equal(c.arrival(0, 0.2, 0.1), 1.05);
  assert.equal(c.arrival(1100, 0.115, 0.1), 1.05, 'inside the band but not yet half of it');
  assert.equal(c.arrival(2200, 0.105, 0.1), 1);
  assert.equal(c.arrival(3300, 0.115, 0.1), 1, 'stays at 1 inside the band');
});

test('with long fragments the band is a quarter of one above the target, half the target below', () => {
  assert.equal(new RateController().arrival(0, 0.5, 0.3, 1), 1);
  assert.equal(new RateController().arrival(0, 0.2, 0.3, 1), 1);
  assert.equal(new RateController().arrival(0, 0.1, 0.3, 1), 0.95, 'below half the target: slower');
  assert.equal(new RateController().arrival(0, 0.6, 0.3, 1), 1.05);
  assert.equal(new RateController().arrival(0, 0.01, 0.3, 1), 0.9);
});

test('the lowest margin of the last second decides, so jitter does not speed it up', () => {
  const c = new RateController();
  c.arrival(0, 0.1, 0.1);
  assert.equal(c.arrival(500, 0.4, 0.1), 1, 'a late burst behind an on-time one');
  assert.ok(c.arrival(1600, 0.4, 0.1) > 1, 'once the low one is over a second old');
  assert.equal(c.reset(), 1);
  assert.deepEqual(c.margins, []);
});

test('closed loop: a viewer 0.6 s behind converges without a seek and then holds', () => {
  // 30 fps parts arriving exactly every 33 ms; the playhead moves at the controller's rate.
  const frame = 1 / 30;
  const target = targetMargin(frame, null);
  const c = new RateController();
  let ahead = 0.6 + target; // buffered ahead of the playhead just before an arrival
  let rate = 1;
  let maxRate = 1;
  let changes = 0;
  for (let i = 0; i < 30 * 30; i++) {
    assert.ok(!farBehind(ahead, target, frame), `no seek needed at ${ahead}`);
    const before = rate;
    rate = c.arrival(i * frame * 1000, ahead, target, frame);
    changes += rate !== before;
    maxRate = Math.max(maxRate, rate);
    ahead += frame - frame * rate; // a frame arrives, the playhead moves on
    assert.ok(ahead > 0, 'never runs dry');
  }
  assert.ok(Math.abs(ahead - target) < 0.03, `settled at ${ahead}`);
  assert.equal(rate, 1);
  assert.ok(maxRate <= 1.1 + 1e-9);
  assert.ok(changes <= 3, `the rate changed ${changes} times`);
});

test('far behind means a seek: a 5 s pause, short or long fragments', () => {
  assert.ok(farBehind(5, 0.1, 1 / 30));
  assert.ok(!farBehind(0.5, 0.1, 1 / 30));
  assert.ok(!farBehind(1.3, 0.3, 1), 'a whole fragment ahead is normal for 1 s fragments');
  assert.ok(!farBehind(3, 0.3, 1));
  assert.ok(farBehind(5, 0.3, 1));
});

test('the window keeps a minute and reports percentiles', () => {
  const w = new Window(60000);
  assert.equal(w.summary(0).p50, null);
  for (let i = 1; i <= 100; i++) w.add(i * 100, i / 1000);
  const s = w.summary(100 * 100);
  assert.equal(s.count, 100);
  assert.equal(s.current, 0.1);
  assert.equal(s.p50, 0.051);
  assert.equal(s.p95, 0.096);
  assert.equal(s.max, 0.1);
  assert.equal(w.summary(100 * 100 + 60000 - 950).count, 10, 'older than a minute is gone');
  w.clear();
  assert.equal(w.summary(0).count, 0);
});

test('prft times: NTP to Unix milliseconds', () => {
  assert.equal(ntpToUnixMs(2208988800, 0), 0);
  assert.equal(ntpToUnixMs(2208988801, 2 ** 31), 1500);
});
