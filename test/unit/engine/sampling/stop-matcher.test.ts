import t from 'tap';
import assert from 'node:assert/strict';
import { StopMatcher } from '../../../../src/engine/sampling/stop-matcher.js';
import { Xoshiro128 } from '../../../../src/engine/sampling/rng.js';

interface Run {
  emits: string[];
  stopped: boolean;
  matched: string | null;
  flushed: string;
}

function run(stops: string[], deltas: string[]): Run {
  const m = new StopMatcher(stops);
  const emits: string[] = [];
  for (const d of deltas) {
    const r = m.push(d);
    emits.push(r.emit);
    if (r.stopped) return { emits, stopped: true, matched: r.matched, flushed: m.flush() };
  }
  return { emits, stopped: false, matched: null, flushed: m.flush() };
}

t.test('a stop string spanning three deltas', async () => {
  const r = run(['\n\nUser'], ['Hello', '\n', '\nUs', 'er', 'ignored']);
  assert.deepEqual(r, { emits: ['Hello', '', '', ''], stopped: true, matched: '\n\nUser', flushed: '' });
});

t.test('text before the stop in the same delta is emitted, the stop and the rest are not', async () => {
  assert.deepEqual(run(['STOP'], ['abc STOP def']), { emits: ['abc '], stopped: true, matched: 'STOP', flushed: '' });
});

t.test('held text is released once it can no longer match', async () => {
  const r = run(['\n\nUser'], ['a\n', '\nX', 'yz']);
  assert.deepEqual(r.emits, ['a', '\n\nX', 'yz']);
  assert.equal(r.stopped, false);
  assert.equal(r.flushed, '');
});

t.test('no false hold-back: flush returns a held partial match at the end', async () => {
  const r = run(['world!'], ['hello ', 'wor']);
  assert.deepEqual(r.emits, ['hello ', '']);
  assert.equal(r.flushed, 'wor');
  assert.deepEqual(run(['world!'], ['hello wor', 'ld']).flushed, 'world');
  assert.deepEqual(run(['xyz'], ['plain text']), { emits: ['plain text'], stopped: false, matched: null, flushed: '' });
});

t.test('multiple stops: the first to complete wins', async () => {
  assert.equal(run(['foo', 'bar'], ['xxbarfoo']).matched, 'bar');
  assert.deepEqual(run(['foo', 'bar'], ['xxbarfoo']).emits, ['xx']);
  // "cd" completes before "abcde" would.
  assert.deepEqual(run(['abcde', 'cd'], ['abcdef']).emits, ['ab']);
});

t.test('overlapping prefixes "ab" and "abc" stop at "ab" however the text is split', async () => {
  for (const deltas of [['a', 'b', 'c'], ['abc'], ['xa', 'bc'], ['xab']]) {
    const r = run(['abc', 'ab'], deltas);
    assert.equal(r.matched, 'ab', deltas.join('|'));
    assert.equal(r.emits.join(''), deltas[0]?.startsWith('x') ? 'x' : '');
  }
  // Ending together, the one starting first (the longer) is reported.
  assert.equal(run(['bc', 'abc'], ['zabc']).matched, 'abc');
});

t.test('a partial match that restarts inside itself', async () => {
  const r = run(['aab'], ['aa', 'a', 'b']);
  assert.deepEqual(r.emits, ['', 'a', '']);
  assert.equal(r.matched, 'aab');
});

t.test('stop at the very start', async () => {
  assert.deepEqual(run(['<|end|>'], ['<|end|>more']), { emits: [''], stopped: true, matched: '<|end|>', flushed: '' });
  assert.deepEqual(run(['<|end|>'], ['<|', 'end|>']).emits, ['', '']);
});

t.test('no stops passes text through; bad use is an error', async () => {
  assert.deepEqual(run([], ['a', 'b']).emits, ['a', 'b']);
  assert.throws(() => new StopMatcher(['ok', '']), /stop\[1\] must be a non-empty string/);
  const m = new StopMatcher(['x']);
  assert.equal(m.push('x').stopped, true);
  assert.throws(() => m.push('y'), /after a stop string matched/);
});

t.test('result is independent of how text is split (random texts, stops and splits)', async () => {
  const rng = Xoshiro128.fromSeed(31);
  const alphabet = 'ab\nc';
  const pick = (len: number): string => Array.from({ length: len }, () => alphabet[Math.floor(rng.nextFloat() * alphabet.length)] ?? 'a').join('');
  for (let trial = 0; trial < 500; trial++) {
    const text = pick(5 + Math.floor(rng.nextFloat() * 30));
    const stops = Array.from({ length: 1 + Math.floor(rng.nextFloat() * 3) }, () => pick(1 + Math.floor(rng.nextFloat() * 4)));
    // Reference on the whole text: earliest end, then earliest start.
    let best: { start: number; end: number; stop: string } | null = null;
    for (const s of stops) {
      const start = text.indexOf(s);
      if (start < 0) continue;
      const end = start + s.length;
      if (best === null || end < best.end || (end === best.end && start < best.start)) best = { start, end, stop: s };
    }
    const deltas: string[] = [];
    for (let i = 0; i < text.length;) {
      const len = Math.floor(rng.nextFloat() * 4);
      deltas.push(text.slice(i, i + len));
      i += len;
    }
    const r = run(stops, deltas);
    const label = JSON.stringify({ text, stops, deltas });
    if (best === null) {
      assert.equal(r.stopped, false, label);
      assert.equal(r.emits.join('') + r.flushed, text, label);
    } else {
      assert.equal(r.matched, best.stop, label);
      assert.equal(r.emits.join(''), text.slice(0, best.start), label);
    }
  }
});
