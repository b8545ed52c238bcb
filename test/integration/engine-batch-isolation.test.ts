/**
 * One sequence's failure ends that sequence alone: in a batch of 8 on the real
 * stories260K model, a fault injected into one sequence's own work (its
 * detokenizer, reached through a forced "poison" token) during the batched
 * prefill or a batched decode step fails that request, and the other 7 run to
 * their full length. A request that bans every token is the client's error (400
 * class), found before it joins a batch.
 */
import assert from 'node:assert/strict';
import t from 'tap';
import { DEFAULT_SAMPLING, type GenerateRequest } from '../../src/engine/types.js';
import type { CoreOutput } from '../../src/engine/engine-core.js';
import type { TextTokenizer } from '../../src/model/tokenizer-types.js';
import { openTestCore } from '../helpers/core.js';
import { missingShared, STORIES_DIR } from '../helpers/shared.js';

const skip = missingShared('models', 'stories260K');
const POISON = 77;
const MAX_TOKENS = 6;

/** A tokenizer whose decode streams throw on the poison id, as a bug in one sequence's own state would. */
function poisoned(inner: TextTokenizer): TextTokenizer {
  return {
    vocabSize: inner.vocabSize,
    encode: (text, options) => inner.encode(text, options),
    decode: (ids, options) => inner.decode(ids, options),
    idToPiece: (id) => inner.idToPiece(id),
    tokenText: (context, id, options) => inner.tokenText(context, id, options),
    tokenTexts: (context, ids, options) => inner.tokenTexts(context, ids, options),
    createDecodeStream(options) {
      const stream = inner.createDecodeStream(options);
      return {
        push(id) {
          if (id === POISON) throw new Error('injected per-sequence fault');
          return stream.push(id);
        },
        flush: () => stream.flush(),
        peek: (ids) => stream.peek(ids),
      };
    },
  };
}

function request(id: string, i: number, extra: Partial<GenerateRequest> = {}): GenerateRequest {
  return {
    id,
    promptTokens: [1, 40 + i, 50 + i, 60 + i],
    sampling: { ...DEFAULT_SAMPLING, temperature: 0, maxTokens: MAX_TOKENS, ignoreEos: true },
    policy: 'full',
    ...extra,
  };
}

interface Outcome {
  tokens: number;
  done: boolean;
  error: string | null;
}

async function runBatch(faulty: number, forced: readonly number[]): Promise<Map<string, Outcome>> {
  const c = await openTestCore(STORIES_DIR, { prefillChunk: 64, tokenizer: poisoned });
  try {
    const outcomes = new Map<string, Outcome>();
    for (let i = 0; i < 8; i++) {
      const id = `r${i}`;
      outcomes.set(id, { tokens: 0, done: false, error: null });
      c.core.submit(request(id, i, i === faulty ? { forcedTokens: forced } : {}));
    }
    await c.core.step();
    const first = c.core.drain();
    assert.equal(new Set(first.map((o) => o.id)).size, 8, 'all 8 prompts were prefilled in one batched pass');
    for (const o of first) record(outcomes, o);
    while (c.core.hasWork()) {
      await c.core.step();
      for (const o of c.core.drain()) record(outcomes, o);
    }
    return outcomes;
  } finally {
    await c.close();
  }
}

function record(outcomes: Map<string, Outcome>, o: CoreOutput): void {
  const r = outcomes.get(o.id);
  assert.ok(r, `unknown id ${o.id}`);
  if ('error' in o) r.error = o.error.code;
  else if ('event' in o && o.event.type === 'token') r.tokens += 1;
  else if ('event' in o && o.event.type === 'done') r.done = true;
}

for (const [phase, forced] of [
  ['the batched prefill', [POISON]],
  ['a batched decode step', [5, 6, POISON]],
] as const) {
  t.test(`a fault in one sequence during ${phase} ends that sequence alone; the other 7 finish`, { skip: skip ?? false }, async () => {
    const outcomes = await runBatch(3, forced);
    for (const [id, r] of outcomes) {
      if (id === 'r3') {
        assert.equal(r.error, 'engine_failed', 'the faulty sequence fails');
        assert.equal(r.done, false);
      } else {
        assert.deepEqual(r, { tokens: MAX_TOKENS, done: true, error: null }, id);
      }
    }
  });
}

t.test('a request whose logit_bias bans every token is rejected as invalid; its batch is untouched', { skip: skip ?? false }, async () => {
  const c = await openTestCore(STORIES_DIR);
  try {
    const V = c.checkpoint.spec.vocabSize;
    const banAll = new Map<number, number>(Array.from({ length: V }, (_, i) => [i, -100]));
    const outcomes = new Map<string, Outcome>();
    for (let i = 0; i < 8; i++) {
      const id = `b${i}`;
      outcomes.set(id, { tokens: 0, done: false, error: null });
      const base = request(id, i);
      c.core.submit(i === 5 ? { ...base, sampling: { ...base.sampling, logitBias: banAll } } : base);
    }
    while (c.core.hasWork()) {
      await c.core.step();
      for (const o of c.core.drain()) {
        record(outcomes, o);
        if ('error' in o) assert.equal(o.error.field, 'logitBias');
      }
    }
    for (const o of c.core.drain()) record(outcomes, o);
    for (const [id, r] of outcomes) {
      if (id === 'b5') assert.equal(r.error, 'invalid_request');
      else assert.deepEqual(r, { tokens: MAX_TOKENS, done: true, error: null }, id);
    }
  } finally {
    await c.close();
  }
});
