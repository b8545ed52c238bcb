/**
 * A decode group's gathered past kept across steps must hold exactly what a
 * fresh gather would (every row's live entries, per layer and head) after
 * appends, evictions, in-place rewrites, membership changes and capacity
 * changes, while copying only what changed.
 */
import assert from 'node:assert/strict';
import t from 'tap';
import { GatheredBatch, rowsFor, type GatheredLayer } from '../../../src/engine/gathered-batch.js';
import { StepInputBuilder } from '../../../src/engine/step-inputs.js';
import { kvAsFloat, type KvDtype } from '../../../src/kv/kv-dtype.js';
import { KvPool } from '../../../src/kv/kv-pool.js';
import { SequenceKv } from '../../../src/kv/sequence-kv.js';

const L = 3;
const KV = 2;
const D = 4;

let serial = 0;

/** A present tensor [1, KV, n, D] of distinct values (so a wrong entry is never equal by chance). */
function present(n: number): Float32Array[] {
  return Array.from({ length: L }, () => Float32Array.from({ length: KV * n * D }, () => (serial++ % 4093) / 64));
}

function makeKv(pool: KvPool, entries: number, dtype: KvDtype = 'fp32', reserve = 1024): SequenceKv {
  const kv = new SequenceKv({ numLayers: L, numKvHeads: KV, headDim: D, dtype }, pool, reserve);
  if (entries > 0) appendN(kv, entries);
  return kv;
}

function appendN(kv: SequenceKv, n: number): void {
  const p = present(n);
  const start = kv.nextPosition;
  kv.append(
    p,
    p,
    0,
    n,
    Array.from({ length: n }, (_, i) => start + i),
  );
}

/** Every row's live entries in the gathered layers equal its sequence's cache. */
function assertHolds(gathered: readonly (GatheredLayer | null)[], kvs: readonly SequenceKv[], what: string): void {
  for (let l = 0; l < L; l++) {
    const g = gathered[l];
    const longest = Math.max(...kvs.map((kv) => kv.length(l)));
    if (longest === 0) {
      assert.equal(g, null, `${what}: layer ${l} has no entries`);
      continue;
    }
    assert.ok(g, `${what}: layer ${l} gathered`);
    assert.ok(g.capacity >= longest && g.capacity % 64 === 0, `${what}: capacity ${g.capacity} covers ${longest} in whole blocks`);
    assert.equal(g.keys.length, kvs.length * KV * g.capacity * D);
    const gk = kvAsFloat(g.keys);
    const gv = kvAsFloat(g.values);
    kvs.forEach((kv, b) => {
      const cap = kv.capacity(l);
      const kk = kvAsFloat(kv.keyBuffer(l));
      const vv = kvAsFloat(kv.valueBuffer(l));
      for (let h = 0; h < KV; h++) {
        for (let e = 0; e < kv.length(l); e++) {
          for (let d = 0; d < D; d++) {
            const at = ((b * KV + h) * g.capacity + e) * D + d;
            const src = (h * cap + e) * D + d;
            if (gk[at] !== kk[src] || gv[at] !== vv[src]) assert.fail(`${what}: row ${b} layer ${l} head ${h} entry ${e} differs`);
          }
        }
      }
    });
  }
}

/** Caches of the given lengths in a fresh pool, and a batch that has already copied them whole. */
function syncedBatch(lengths: readonly number[]): { kvs: SequenceKv[]; batch: GatheredBatch } {
  const pool = new KvPool(1 << 30);
  const kvs = lengths.map((n) => makeKv(pool, n));
  const batch = new GatheredBatch(L, KV, D, 'fp32');
  batch.sync(kvs);
  return { kvs, batch };
}

t.test('steady decode steps copy only the appended entries', async () => {
  const pool = new KvPool(1 << 30);
  const kvs = [makeKv(pool, 10), makeKv(pool, 30), makeKv(pool, 3)];
  const batch = new GatheredBatch(L, KV, D, 'fp32');
  assertHolds(batch.sync(kvs), kvs, 'first step');
  assert.equal(batch.copiedEntries, (10 + 30 + 3) * L, 'the first step copies every entry');
  for (let step = 0; step < 5; step++) {
    for (const kv of kvs) appendN(kv, 1);
    const before = batch.copiedEntries;
    assertHolds(batch.sync(kvs), kvs, `step ${step}`);
    assert.equal(batch.copiedEntries - before, kvs.length * L, 'one entry per row and layer');
  }
});

t.test('an eviction is copied from the first entry it moved; a shortened row keeps taking appends', async () => {
  const { kvs, batch } = syncedBatch([20, 40]);
  const kv = kvs[1] as SequenceKv;
  // Keep entries 0..9 and 30..39 of layer 1 (StreamingLLM-like: sinks and a window).
  const keep = Int32Array.from([...Array.from({ length: 10 }, (_, i) => i), ...Array.from({ length: 10 }, (_, i) => 30 + i)]);
  kv.retain(1, [keep, keep]);
  const before = batch.copiedEntries;
  assertHolds(batch.sync(kvs), kvs, 'after eviction');
  assert.equal(batch.copiedEntries - before, 10, 'entries 10..19 of layer 1 only');
  for (const s of kvs) appendN(s, 2);
  assertHolds(batch.sync(kvs), kvs, 'appends after eviction');
});

t.test('in-place rewrites are copied when marked, and a reader too far behind copies the layer whole', async () => {
  const { kvs, batch } = syncedBatch([16, 16]);
  const kv = kvs[0] as SequenceKv;
  const keys = kv.keyBuffer(2);
  keys[(1 * kv.capacity(2) + 5) * D] = 1234.5; // head 1, entry 5
  kv.markRewritten(2, 5);
  const before = batch.copiedEntries;
  assertHolds(batch.sync(kvs), kvs, 'after one rewrite');
  assert.equal(batch.copiedEntries - before, 11, 'entries 5..15 of layer 2');
  for (let i = 0; i < 12; i++) {
    keys[(0 * kv.capacity(2) + i) * D + 1] = -i;
    kv.markRewritten(2, i);
  }
  assertHolds(batch.sync(kvs), kvs, 'after more rewrites than the log holds');
});

t.test('arrange keeps sequences in their rows; a departure is filled by a newcomer or the last row', async () => {
  const pool = new KvPool(1 << 30);
  const [a, b, c, d, e] = [makeKv(pool, 8), makeKv(pool, 9), makeKv(pool, 10), makeKv(pool, 11), makeKv(pool, 12)] as SequenceKv[];
  if (!a || !b || !c || !d || !e) throw new Error('unreachable');
  const batch = new GatheredBatch(L, KV, D, 'fp32');
  batch.sync([a, b, c, d]);
  // b leaves, e joins: e takes b's row.
  const members = [a, c, d, e];
  const order = batch.arrange(members).map((i) => members[i] as SequenceKv);
  assert.deepEqual(order, [a, e, c, d]);
  let before = batch.copiedEntries;
  assertHolds(batch.sync(order), order, 'newcomer in a free row');
  assert.equal(batch.copiedEntries - before, 12 * L, 'only the newcomer is copied');
  // a leaves, nobody joins: the last row (d) moves into row 0.
  const fewer = [e, c, d];
  const order2 = batch.arrange(fewer).map((i) => fewer[i] as SequenceKv);
  assert.deepEqual(order2, [d, e, c]);
  before = batch.copiedEntries;
  assertHolds(batch.sync(order2), order2, 'last row moved into the hole');
  assert.equal(batch.copiedEntries - before, 11 * L, 'only the moved row is copied');
  // Any order stays correct (rows holding another sequence are copied whole).
  const shuffled = [c, d, e];
  assertHolds(batch.sync(shuffled), shuffled, 'an order the batch did not propose');
});

t.test('a row outgrowing the capacity re-lays out the batch; a much shorter batch shrinks it', async () => {
  const pool = new KvPool(1 << 30);
  const kvs = [makeKv(pool, 60), makeKv(pool, 5)];
  const batch = new GatheredBatch(L, KV, D, 'fp32');
  const first = batch.sync(kvs)[0];
  assert.equal(first?.capacity, 128, 'one block of headroom');
  appendN(kvs[0] as SequenceKv, 100);
  assert.equal(batch.sync(kvs)[0]?.capacity, 256, '160 entries: 192 plus one block');
  appendN(kvs[0] as SequenceKv, 200);
  assert.equal(batch.sync(kvs)[0]?.capacity, 448, '360 entries: 384 plus one block');
  assertHolds(batch.sync(kvs), kvs, 'after growing');
  const short = [kvs[1] as SequenceKv, makeKv(pool, 2)];
  // 448 is more than 3 blocks beyond the 64 that 5 entries need.
  assert.equal(batch.sync(short)[0]?.capacity, 128);
  assertHolds(batch.sync(short), short, 'after shrinking');
  // The buffers shrink with the layout: room for 2 rows (and 2 more) x 128 entries, not the 448 they held.
  const room = rowsFor(2) * KV * 128 * D * 4 * 2 * L;
  assert.ok(batch.bytes <= room, `${batch.bytes} bytes held for a room of ${room}`);
});

t.test('a re-layout moves what the rows hold instead of copying it again, a few layers per step', async () => {
  // L layers, one grown early per step (at least one; L / 16 rounded up). Five rows, then three:
  // the buffers keep room for five, so the three rows move within them (in place).
  const { kvs: five, batch } = syncedBatch([100, 90, 80, 70, 60]);
  const kvs = five.slice(0, 3);
  const held = batch.bytes;
  assert.equal(batch.sync(kvs)[0]?.capacity, 192, '100 entries: 128 plus one block');
  // 170 entries: 22 to spare, fewer than half a block. One layer per step grows early.
  for (const kv of kvs) appendN(kv, 70);
  const capacities: number[][] = [];
  let copied = batch.copiedEntries;
  for (let step = 0; step < L; step++) {
    const gathered = batch.sync(kvs);
    assertHolds(gathered, kvs, `early step ${step}`);
    capacities.push(gathered.map((g) => g?.capacity ?? 0));
    const perStep = batch.copiedEntries - copied;
    assert.equal(perStep, step === 0 ? 3 * 70 * L : 0, 'only appended entries are copied: moved rows are not copied again');
    copied = batch.copiedEntries;
  }
  assert.deepEqual(
    capacities.map((c) => c.filter((x) => x === 256).length),
    Array.from({ length: L }, (_, i) => i + 1),
    'one more layer at 256 per step',
  );
  assert.equal(batch.bytes, held, 'moved in place: no new buffers');
  // Outgrowing C forces every layer at once, still without copying the rows again.
  for (const kv of kvs) appendN(kv, 100);
  const before = batch.copiedEntries;
  const grown = batch.sync(kvs);
  assertHolds(grown, kvs, 'forced re-layout');
  assert.ok(grown.every((g) => g?.capacity === 384));
  assert.equal(batch.copiedEntries - before, 3 * 100 * L, 'the appended entries only');
});

t.test('a layer with no room for another row reallocates early, so a row that joins finds room', async () => {
  const pool = new KvPool(1 << 30);
  const maxRows = 12;
  const kvs = Array.from({ length: maxRows }, (_, i) => makeKv(pool, 40 + i));
  const batch = new GatheredBatch(L, KV, D, 'fp32', maxRows);
  const rowBytes = KV * 128 * D * 4 * 2 * L; // C = 128 for 40-51 entries
  for (let B = 1; B <= maxRows; B++) {
    const members = kvs.slice(0, B);
    const before = batch.copiedEntries;
    assertHolds(batch.sync(members), members, `${B} rows`);
    assert.equal(batch.copiedEntries - before, (40 + B - 1) * L, 'only the newcomer is copied');
    // Steps between joins (a prompt is prefilled over several): one layer per step makes room.
    for (let step = 0; step < L; step++) assertHolds(batch.sync(members), members, `${B} rows, step ${step}`);
    if (B < maxRows) assert.ok(batch.bytes >= (B + 1) * rowBytes, `room for row ${B + 1} before it joins`);
  }
  assert.equal(batch.bytes, maxRows * rowBytes, 'no room is kept beyond the most rows a batch can have');
  assert.equal(rowsFor(3), 5);
  assert.equal(rowsFor(40), 50);
  assert.equal(rowsFor(10, 11), 11);
  assert.equal(rowsFor(12, 11), 12);
});

t.test('a batch that loses most of its rows gives its buffers back; a group that stops decoding keeps no copy', async () => {
  const pool = new KvPool(1 << 30);
  const kvs = Array.from({ length: 8 }, (_, i) => makeKv(pool, 100 + i));
  const batch = new GatheredBatch(L, KV, D, 'fp32');
  batch.sync(kvs);
  const eight = batch.bytes;
  const two = kvs.slice(0, 2);
  assertHolds(batch.sync(two), two, 'two rows left');
  assert.ok(batch.bytes * 2 < eight, `two rows hold ${batch.bytes} bytes, eight held ${eight}`);
  for (const kv of two) appendN(kv, 1);
  assertHolds(batch.sync(two), two, 'a step after the shrink');

  const inputs = new StepInputBuilder(L, KV, D, { slidingWindow: null });
  const step = (group: string, members: readonly SequenceKv[]): void => {
    inputs.decode(
      members,
      members.map(() => 1),
      members.map((kv) => kv.nextPosition),
      null,
      group,
    );
  };
  step('a', kvs.slice(0, 4));
  step('b', kvs.slice(4));
  assert.ok(inputs.gatheredBytes > 0);
  inputs.keepGroups(new Set(['b']));
  const onlyB = inputs.gatheredBytes;
  assert.ok(onlyB > 0 && onlyB < eight, 'group a gave its copy back');
  step('b', kvs.slice(4, 5));
  assert.equal(inputs.gatheredBytes, 0, 'one sequence left: it decodes in place, and the copy is dropped');
  const copied = inputs.gatheredEntries;
  step('b', kvs.slice(4, 6));
  assert.ok(inputs.gatheredEntries > copied, 'a group that grows again gathers afresh');
  inputs.keepGroups(new Set());
  assert.equal(inputs.gatheredBytes, 0);
});

t.test('float16 caches are gathered in float16', async () => {
  const pool = new KvPool(1 << 30);
  const kvs = [makeKv(pool, 7, 'fp16'), makeKv(pool, 3, 'fp16')];
  const batch = new GatheredBatch(L, KV, D, 'fp16');
  const g = batch.sync(kvs);
  assert.ok(g[0]?.keys instanceof Uint16Array);
  for (const kv of kvs) appendN(kv, 1);
  assertHolds(batch.sync(kvs), kvs, 'fp16 after a step');
});
