#!/usr/bin/env node
/**
 * Training data for the long-context model: RULER-style task items (the bench's own
 * generator, test/bench/ruler/tasks.ts, compiled to dist/) and plain text rows, hidden
 * in haystacks from ../shared/data/text, tokenized with the model's tokenizer.
 *
 * usage: node tools/train/make-data.mjs --out DIR --length L --rows N --seed S [--tokenizer DIR] [--text-share 0.15]
 * Writes DIR/rows-L-S.bin: N rows of L int16 token ids, then N rows of L uint8 loss
 * weights (0 = padding, 1 = text, 2 = answer). Needs `npm run build` first.
 * Seeds used for training are below 1e9; the bench draws its items from seeds >= 1e9.
 */
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';

const root = resolve(new URL('../..', import.meta.url).pathname);
const { loadTokenizer } = await import(join(root, 'dist/src/model/tokenizer.js'));
const { Haystack, generateTask } = await import(join(root, 'dist/test/bench/ruler/tasks.js'));
const { Rng } = await import(join(root, 'dist/src/model/create/prng.js'));

const { values } = parseArgs({
  options: {
    out: { type: 'string' },
    length: { type: 'string' },
    rows: { type: 'string' },
    seed: { type: 'string', default: '1' },
    tokenizer: { type: 'string', default: join(root, '../shared/models/stories260K') },
    text: { type: 'string', default: join(root, '../shared/data/text') },
    'text-share': { type: 'string', default: '0.15' },
    'min-length': { type: 'string' },
    /** Task weights, e.g. "passkey:3,niah-single:3,niah-multikey:3"; default: the mix below. */
    mix: { type: 'string' },
  },
});
const L = Number(values.length);
const N = Number(values.rows);
const seed = Number(values.seed);
const minLength = values['min-length'] ? Number(values['min-length']) : Math.floor(L * 0.55);
const tok = loadTokenizer(values.tokenizer);
const count = (s) => tok.encode(s, { addSpecialTokens: false }).length;
const texts = readdirSync(values.text)
  .filter((f) => f.endsWith('.txt') && readFileSync(join(values.text, f)).length > 100_000)
  .sort();
const haystacks = texts.map((f) => Haystack.fromText(readFileSync(join(values.text, f), 'utf8'), count));
// Task mix: retrieval tasks dominate; multi-value, multi-query and variable tracking are rarer.
const mix = values.mix
  ? values.mix.split(',').map((s) => {
      const [t, w] = s.split(':');
      return [t, Number(w)];
    })
  : [
      ['passkey', 3],
      ['niah-single', 3],
      ['niah-multikey', 3],
      ['niah-multivalue', 1],
      ['niah-multiquery', 1],
      ['vt', 1],
    ];
const mixTotal = mix.reduce((a, [, w]) => a + w, 0);
const rng = new Rng(seed, 0x7a1);
const ids = new Int16Array(N * L);
const weights = new Uint8Array(N * L);
const BOS = 1;
const EOS = 2;
const t0 = Date.now();
const taskCounts = {};
for (let r = 0; r < N; r++) {
  const hay = haystacks[rng.nextU32() % haystacks.length];
  const target = minLength + (rng.nextU32() % Math.max(1, L - minLength - 24));
  let row;
  let w;
  if (rng.nextU32() % 1000 < Number(values['text-share']) * 1000) {
    const text = hay.take(rng, L).join(' ');
    row = [BOS, ...tok.encode(text, { addSpecialTokens: false })].slice(0, L);
    w = row.map((_, i) => (i === 0 ? 0 : 1));
    taskCounts.text = (taskCounts.text ?? 0) + 1;
  } else {
    let x = rng.nextU32() % mixTotal;
    let task = mix[0][0];
    for (const [t, wt] of mix) {
      if (x < wt) {
        task = t;
        break;
      }
      x -= wt;
    }
    let opts = { targetTokens: target, depth: (rng.nextU32() % 10001) / 10000, seed: rng.nextU32() % 1_000_000_000 };
    let item;
    try {
      item = generateTask(task, opts, hay, count);
    } catch {
      // Too short a row for this many needles: a single needle instead.
      task = 'passkey';
      item = generateTask(task, opts, hay, count);
    }
    let p = tok.encode(item.prompt, { addSpecialTokens: false });
    let c = tok.encode(item.prompt + item.completion, { addSpecialTokens: false }).slice(p.length);
    // The haystack budget counts sentences alone; shrink until the whole row fits.
    while (p.length + c.length + 2 > L) {
      item = generateTask(task, { ...opts, targetTokens: opts.targetTokens - (p.length + c.length + 2 - L) - 8 }, hay, count);
      p = tok.encode(item.prompt, { addSpecialTokens: false });
      c = tok.encode(item.prompt + item.completion, { addSpecialTokens: false }).slice(p.length);
    }
    row = [BOS, ...p, ...c, EOS];
    w = row.map((_, i) => (i === 0 ? 0 : i <= p.length ? 1 : 2));
    if (row.length > L) throw new Error(`row of ${row.length} tokens exceeds ${L}`);
    taskCounts[task] = (taskCounts[task] ?? 0) + 1;
  }
  ids.set(row, r * L);
  weights.set(w, r * L);
}
mkdirSync(values.out, { recursive: true });
const file = join(values.out, `rows-${L}-${seed}.bin`);
writeFileSync(file, Buffer.concat([Buffer.from(ids.buffer), Buffer.from(weights.buffer)]));
process.stderr.write(`${file}: ${N} rows x ${L} in ${((Date.now() - t0) / 1000).toFixed(1)} s ${JSON.stringify(taskCounts)}\n`);
