/**
 * Batched decode in the engine keeps each decode group's gathered past across
 * steps: on the real stories260K model, four requests that join and leave a
 * batch at different steps generate exactly what each generates alone, and the
 * KV entries copied into the batch stay within a whole copy or two of each
 * sequence plus one entry per decoded token and layer, where gathering afresh
 * every step would copy every row's cache every step.
 */
import assert from 'node:assert/strict';
import t from 'tap';
import { DEFAULT_SAMPLING, type GenerateRequest } from '../../src/engine/types.js';
import { openTestCore } from '../helpers/core.js';
import { missingShared, STORIES_DIR } from '../helpers/shared.js';

const skip = missingShared('models', 'stories260K');
const PROMPT = [1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 13, 441, 416, 411];

function request(i: number): GenerateRequest {
  const prompt = [...PROMPT, ...PROMPT].slice(0, 24 + 4 * i).map((id, k) => (k > 0 && k % 7 === i ? 300 + i : id));
  return {
    id: `r${i}`,
    promptTokens: prompt,
    sampling: { ...DEFAULT_SAMPLING, temperature: 0, maxTokens: 12 + 6 * i, ignoreEos: true },
    policy: 'full',
  };
}

/** Each request's tokens generated alone (one engine, one request at a time), by id. */
async function aloneTokens(requests: readonly GenerateRequest[]): Promise<Map<string, number[]>> {
  const alone = new Map<string, number[]>();
  const solo = await openTestCore(STORIES_DIR, { prefillChunk: 64 });
  try {
    for (const r of requests) {
      const events = await solo.generate(r);
      alone.set(
        r.id,
        events.flatMap((e) => (e.type === 'token' ? [e.tokenId] : [])),
      );
    }
  } finally {
    await solo.close();
  }
  return alone;
}

t.test('a batch whose members join and leave generates what each does alone, copying only what changed', { skip: skip ?? false }, async (t) => {
  const alone = await aloneTokens([0, 1, 2, 3].map(request));

  const c = await openTestCore(STORIES_DIR, { prefillChunk: 64 });
  try {
    const L = c.checkpoint.spec.numLayers;
    const got = new Map<string, number[]>();
    // r0 and r1 start together, r2 joins after 4 steps, r3 after 9; r0 leaves first.
    const joins = new Map([
      [0, [0, 1]],
      [4, [2]],
      [9, [3]],
    ]);
    const done = new Set<string>();
    // Row-steps of batched decode (two or more sequences decoding): gathering afresh copies each row whole.
    let batchedRowSteps = 0;
    let peakGatheredBytes = 0;
    for (let step = 0; step < 200 && (step < 10 || c.core.hasWork()); step++) {
      for (const i of joins.get(step) ?? []) c.core.submit(request(i));
      const decoding = [...got.keys()].filter((id) => !done.has(id)).length;
      if (decoding >= 2) batchedRowSteps += decoding;
      await c.core.step();
      peakGatheredBytes = Math.max(peakGatheredBytes, c.core.stats().gatheredKvBytes);
      for (const o of c.core.drain()) {
        assert.ok(!('error' in o), JSON.stringify(o));
        if ('event' in o && o.event.type === 'token') got.set(o.id, [...(got.get(o.id) ?? []), o.event.tokenId]);
        if ('event' in o && o.event.type === 'done') done.add(o.id);
      }
      c.core.maintain();
    }
    for (const [id, tokens] of alone) assert.deepEqual(got.get(id), tokens, `${id}: batched tokens equal its tokens alone`);

    const stats = c.core.stats();
    let wholeCopies = 0;
    for (let i = 0; i < 4; i++) {
      const r = request(i);
      wholeCopies += r.promptTokens.length + r.sampling.maxTokens;
    }
    const bound = L * (stats.decodeTokens + 2 * wholeCopies);
    t.comment(
      `gathered ${stats.gatheredKvEntries} entry-layers over ${stats.decodeTokens} decode tokens (bound ${bound}; ${batchedRowSteps} batched row-steps)`,
    );
    assert.ok(stats.gatheredKvEntries > 0, 'batched steps ran');
    assert.ok(stats.gatheredKvEntries <= bound, `copied ${stats.gatheredKvEntries} entry-layers, more than ${bound}`);
    // Gathering afresh copies each decoding row whole every batched step: at least 24 entries per row-step here.
    assert.ok(stats.gatheredKvEntries * 3 < L * 24 * batchedRowSteps, 'far less than gathering every row every step');
    assert.ok(peakGatheredBytes > 0, 'the batch held a gathered copy while it decoded');
    assert.equal(stats.gatheredKvBytes, 0, 'no gathered copy outlives the batch');
  } finally {
    await c.close();
  }
});

t.test(
  'a batch whose layers re-lay out on different steps (early, a few per step) still generates what each request does alone',
  { skip: skip ?? false },
  async () => {
    // 24-32 prompt tokens and 150 out: the longest row passes 96 and 160 entries, where its
    // layers move to a longer capacity one per step (stories260K has 5), some while others wait.
    const long = (i: number): GenerateRequest => {
      const r = request(i);
      return { ...r, sampling: { ...r.sampling, maxTokens: 150 } };
    };
    const alone = await aloneTokens([0, 1, 2].map(long));
    const c = await openTestCore(STORIES_DIR, { prefillChunk: 64 });
    try {
      const got = new Map<string, number[]>();
      const joins = new Map([
        [0, [0]],
        [5, [1]],
        [40, [2]],
      ]);
      for (let step = 0; step < 400 && (step < 41 || c.core.hasWork()); step++) {
        for (const i of joins.get(step) ?? []) c.core.submit(long(i));
        await c.core.step();
        for (const o of c.core.drain()) {
          assert.ok(!('error' in o), JSON.stringify(o));
          if ('event' in o && o.event.type === 'token') got.set(o.id, [...(got.get(o.id) ?? []), o.event.tokenId]);
        }
        c.core.maintain();
      }
      for (const [id, tokens] of alone) assert.deepEqual(got.get(id), tokens, `${id}: batched tokens equal its tokens alone`);
    } finally {
      await c.close();
    }
  },
);
