/**
 * KV-eviction policies inside the real engine on the real stories260K model:
 * keep-everything parameters reproduce the full model, real budgets evict and
 * report what they kept, and StreamingLLM streams 100,000 tokens with flat
 * memory and in-window perplexity while full attention degrades past the
 * trained context.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import t from 'tap';
import { type GenerateRequest } from '../../src/engine/types.js';
import { parsePolicyFile, type Policy } from '../../src/policies/registry.js';
import { openTestCore } from '../helpers/core.js';
import { missingShared, sharedPath, STORIES_DIR } from '../helpers/shared.js';
import { loadTokenizer } from '../../src/model/tokenizer.js';
import { greedyRequest } from '../helpers/requests.js';

const skip = missingShared('models', 'stories260K') ?? missingShared('data', 'text', 'tinystories_niklas6.txt');

function policy(yaml: string): Policy {
  return parsePolicyFile(yaml, '<test>');
}

const KEEP_ALL: Record<string, string> = {
  'streaming-llm': 'params: {budget: 1, sinkTokens: 4, compressEvery: 1}',
  h2o: 'params: {budget: 1, compressEvery: 1}',
  snapkv: 'params: {budget: 1, observationWindow: 16, compressEvery: 0}',
  pyramidkv: 'params: {budget: 1, observationWindow: 16, compressEvery: 0}',
  tova: 'params: {budget: 1, compressEvery: 1}',
  knorm: 'params: {budget: 1, compressEvery: 2}',
};

function storyTokens(n: number): number[] {
  const text = readFileSync(sharedPath('data', 'text', 'tinystories_niklas6.txt'), 'utf8');
  const ids = loadTokenizer(STORIES_DIR).encode(text, { addSpecialTokens: true });
  const out: number[] = [];
  while (out.length < n) out.push(...(out.length === 0 ? ids : ids.slice(1)));
  return out.slice(0, n);
}

function request(id: string, prompt: readonly number[], servingPolicy: Policy | undefined, maxTokens: number): GenerateRequest {
  return greedyRequest(id, prompt, maxTokens, servingPolicy, { captureLogprobs: true });
}

/** Log-probability agreement between graph cores that differ only in float rounding (the decode core's products). */
const ROUNDING = 1e-4;

t.test('every eviction method with keep-everything parameters reproduces the full model (1e-4)', { skip: skip ?? false }, async (t) => {
  const c = await openTestCore(STORIES_DIR, { prefillChunk: 32 });
  try {
    const prompt = storyTokens(80);
    const full = (await c.generate(request('full', prompt, undefined, 24))).at(-1);
    assert.ok(full?.type === 'done' && full.capturedLogprobs);
    for (const [method, params] of Object.entries(KEEP_ALL)) {
      const p = policy(`name: ${method}-all\nkind: kv-eviction\nmethod: ${method}\n${params}\n`);
      const done = (await c.generate(request(method, prompt, p, 24))).at(-1);
      assert.ok(done?.type === 'done' && done.capturedLogprobs, method);
      let diff = 0;
      done.capturedLogprobs.forEach((v, i) => (diff = Math.max(diff, Math.abs(v - (full.capturedLogprobs?.[i] ?? NaN)))));
      t.comment(`${method}: max |log p - log p_full| = ${diff.toExponential(2)}`);
      // Float rounding only: full decodes through the lean core (its value product as one-row
      // products), the statistics variant through the general core (one G-row product).
      assert.ok(diff <= ROUNDING, `${method}: ${diff}`);
      assert.equal(done.policy.compressionRatio, 1, method);
    }
    assert.equal(c.core.stats().kvBytesUsed, 0);
  } finally {
    await c.close();
  }
});

t.test('at a 50% budget every method evicts, reports what it kept, and frees its memory', { skip: skip ?? false }, async (t) => {
  const c = await openTestCore(STORIES_DIR, { prefillChunk: 32 });
  try {
    const prompt = storyTokens(120);
    for (const method of Object.keys(KEEP_ALL)) {
      const params = KEEP_ALL[method]?.replace('budget: 1', 'budget: 0.5') ?? '';
      const p = policy(`name: ${method}-50\nkind: kv-eviction\nmethod: ${method}\n${params}\n`);
      const events = await c.generate(request(method, prompt, p, 16));
      const done = events.at(-1);
      assert.ok(done?.type === 'done', method);
      assert.equal(done.usage.completionTokens, 16);
      t.comment(
        `${method}: kept ${done.policy.kvTokensRetained.toFixed(1)} of ${done.policy.contextTokens} (ratio ${done.policy.compressionRatio.toFixed(3)}), attention mass retained ${done.policy.attentionMassRetained?.toFixed(3) ?? 'n/a'}`,
      );
      assert.ok(done.policy.compressionRatio < 0.75, `${method} kept ${done.policy.compressionRatio}`);
      assert.ok(done.policy.compressionRatio > 0.3, `${method} kept ${done.policy.compressionRatio}`);
    }
    assert.equal(c.core.stats().kvBytesUsed, 0);
  } finally {
    await c.close();
  }
});

t.test(
  'StreamingLLM streams 100,000 tokens with flat KV memory and in-window perplexity; full attention degrades past 512',
  { skip: skip ?? false },
  async (t) => {
    const c = await openTestCore(STORIES_DIR, { prefillChunk: 256 });
    try {
      const tokens = storyTokens(100_000);
      const ppl = (lp: Float32Array, from = 0): number => {
        let s = 0;
        for (let i = from; i < lp.length; i++) s -= lp[i] ?? 0;
        return Math.exp(s / (lp.length - from));
      };
      // In-window reference on the same text: full attention on independent 512-token windows.
      let nll = 0;
      let n = 0;
      for (let start = 0; start + 512 <= tokens.length; start += 512) {
        const r = await c.score({ id: `win-${start}`, tokens: tokens.slice(start, start + 512), policy: 'full', from: 0, mode: 'target' });
        for (const v of r.targetLogprobs) nll -= v;
        n += r.targetLogprobs.length;
      }
      const inWindow = Math.exp(nll / n);
      const streaming = policy('name: streaming-256\nkind: kv-eviction\nmethod: streaming-llm\nparams: {budget: 256, sinkTokens: 4, compressEvery: 1}\n');
      const s = await c.score({ id: 'stream', tokens, policy: streaming.name, servingPolicy: streaming, from: 0, mode: 'target', chunk: 256 });
      const streamPpl = ppl(s.targetLogprobs);
      const streamPeak = c.peakKvBytes();
      // Full attention over 4096 tokens: positions far past the trained 512.
      const f = await c.score({ id: 'full-long', tokens: tokens.slice(0, 4096), policy: 'full', from: 0, mode: 'target', chunk: 256 });
      const fullPast512 = ppl(f.targetLogprobs, 1024);
      t.comment(
        `in-window perplexity ${inWindow.toFixed(3)}; streaming-llm over ${tokens.length} tokens ${streamPpl.toFixed(3)} (${(streamPpl / inWindow).toFixed(3)}x), peak KV ${streamPeak} bytes, final ${s.policy.kvTokensRetained} entries; full attention at positions 1024-4095 ${fullPast512.toFixed(3)}`,
      );
      assert.ok(streamPpl <= 1.3 * inWindow, `streaming perplexity ${streamPpl} vs in-window ${inWindow}`);
      assert.ok(fullPast512 > 1.5 * inWindow, `full attention past the window should degrade: ${fullPast512}`);
      // Flat memory: never more than the budget plus one chunk (and its growth slack) per layer.
      const perToken = 5 * 2 * 4 * 8 * 4;
      assert.ok(streamPeak <= (256 + 256) * 1.25 * perToken + 64 * perToken, `peak KV bytes ${streamPeak}`);
    } finally {
      await c.close();
    }
  },
);

t.test('Quest and sink-window: keep-everything equals the full model; real budgets attend a fraction of the cache', { skip: skip ?? false }, async (t) => {
  const c = await openTestCore(STORIES_DIR, { prefillChunk: 64 });
  try {
    const prompt = storyTokens(300);
    const full = (await c.generate(request('full-q', prompt, undefined, 20))).at(-1);
    assert.ok(full?.type === 'done' && full.capturedLogprobs);
    const compare = (name: string, got: Float32Array | undefined): number => {
      assert.ok(got, name);
      let diff = 0;
      got.forEach((v, i) => (diff = Math.max(diff, Math.abs(v - (full.capturedLogprobs?.[i] ?? NaN)))));
      return diff;
    };
    const questAll = policy('name: quest-all\nkind: sparse-attention\nmethod: quest\nparams: {pageSize: 16, budget: 1, denseLayers: 0}\n');
    const qa = (await c.generate(request('quest-all', prompt, questAll, 20))).at(-1);
    assert.ok(qa?.type === 'done');
    const qaDiff = compare('quest-all', qa.capturedLogprobs);
    t.comment(`quest at budget 1: max |diff| ${qaDiff.toExponential(2)}`);
    assert.ok(qaDiff <= ROUNDING);
    const swAll = policy('name: sw-all\nkind: sparse-attention\nmethod: sink-window\nparams: {sinkTokens: 4, windowTokens: 4096}\n');
    const sa = (await c.generate(request('sw-all', prompt, swAll, 20))).at(-1);
    assert.ok(sa?.type === 'done');
    const saDiff = compare('sink-window-all', sa.capturedLogprobs);
    t.comment(`sink-window covering the prompt: max |diff| ${saDiff.toExponential(2)}`);
    assert.ok(saDiff <= ROUNDING);

    const quest = policy('name: quest-25\nkind: sparse-attention\nmethod: quest\nparams: {pageSize: 16, budget: 0.25, denseLayers: 1}\n');
    const q = (await c.generate(request('quest-25', prompt, quest, 20))).at(-1);
    assert.ok(q?.type === 'done');
    const ratio = Number(q.policy.details['attendedRatio']);
    const qDiff = compare('quest-25', q.capturedLogprobs);
    t.comment(`quest at 25%: attended ${ratio.toFixed(3)} of the cache, max |diff| ${qDiff.toFixed(3)}`);
    assert.ok(ratio < 0.5 && ratio > 0.1, `attended ratio ${ratio}`);
    assert.ok(qDiff > 0, 'a 25% selection must change something');
    assert.equal(q.policy.compressionRatio, 1, 'Quest keeps the whole cache');

    const sw = policy('name: sw-64\nkind: sparse-attention\nmethod: sink-window\nparams: {sinkTokens: 4, windowTokens: 64}\n');
    const s = (await c.generate(request('sw-64', prompt, sw, 20))).at(-1);
    assert.ok(s?.type === 'done' && s.usage.completionTokens === 20);
    t.comment(`sink-window 4+64 prefill: max |diff| ${compare('sw-64', s.capturedLogprobs).toFixed(3)}`);
    assert.equal(c.core.stats().kvBytesUsed, 0);
  } finally {
    await c.close();
  }
});

t.test(
  'context compression runs in the engine before prefill: a prompt longer than the window fits, and the report says what was dropped',
  { skip: skip ?? false },
  async (t) => {
    const c = await openTestCore(STORIES_DIR, { prefillChunk: 128 });
    try {
      const prompt = storyTokens(700); // the window is 512
      const sc = policy('name: sc\nkind: context-compression\nmethod: selective-context\nparams: {rate: 0.5, unit: sentence}\n');
      const base = request('sc', prompt, sc, 8);
      const done = (await c.generate({ ...base, captureLogprobs: false, returnDropped: true, compressionRate: 400 })).at(-1);
      assert.ok(done?.type === 'done');
      const d = done.policy.details;
      t.comment(
        `selective-context: ${d['originalTokens']} -> ${d['compressedTokens']} tokens in ${Number(d['compressMs']).toFixed(1)} ms; ${done.dropped?.length ?? 0} dropped spans`,
      );
      assert.equal(done.policy.kind, 'context-compression');
      assert.equal(d['originalTokens'], 700);
      assert.ok(Number(d['compressedTokens']) <= 400 && Number(d['compressedTokens']) > 300);
      assert.ok((done.dropped?.length ?? 0) > 0 && (done.dropped?.[0]?.text.length ?? 0) > 0);
      assert.equal(done.usage.completionTokens, 8);
      // Compressed but still too long: the error states both numbers.
      await assert.rejects(c.generate({ ...base, id: 'sc-too-long', compressionRate: 0.99 }), /context_length_exceeded: .*512 tokens.*700 tokens/);
      assert.equal(c.core.stats().kvBytesUsed, 0);
    } finally {
      await c.close();
    }
  },
);

t.test(
  'a policy that evicts only at prefill end decodes on the plain graph; one that evicts while decoding keeps statistics',
  { skip: skip ?? false },
  async () => {
    const c = await openTestCore(STORIES_DIR, { prefillChunk: 32 });
    try {
      const prompt = storyTokens(96);
      const snap = policy('name: snapkv-50\nkind: kv-eviction\nmethod: snapkv\nparams: {budget: 0.5, observationWindow: 16, compressEvery: 0}\n');
      const before = c.core.stats().passes;
      const done = (await c.generate(request('snap', prompt, snap, 12))).at(-1);
      assert.ok(done?.type === 'done' && done.policy.compressionRatio < 1, 'snapkv evicted');
      const after = c.core.stats().passes;
      // 96 prompt tokens in chunks of 32: three prefill passes with statistics, then 11 decode passes without.
      assert.equal(after.stats - before.stats, 3);
      assert.equal(after.plain - before.plain, 11);
      const h2o = policy('name: h2o-50\nkind: kv-eviction\nmethod: h2o\nparams: {budget: 0.5, compressEvery: 1}\n');
      const b2 = c.core.stats().passes;
      await c.generate(request('h2o', prompt, h2o, 12));
      const a2 = c.core.stats().passes;
      assert.equal(a2.stats - b2.stats, 3 + 11);
      assert.equal(a2.plain - b2.plain, 0);
    } finally {
      await c.close();
    }
  },
);
