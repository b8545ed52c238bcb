/**
 * The 2026 families (qwen3, smollm3, phi3, gemma3_text, gemma2) served by the engine core on generated
 * checkpoints: greedy generation under full attention follows the float64
 * reference step by step (log-softmax rows within 1e-5), every KV policy with
 * keep-everything parameters reproduces full attention, and snapkv-25, quest and
 * streaming-llm-25 run with real budgets; prompts are longer than Gemma's
 * sliding window (16 at tiny). Phi-3's longrope cannot renumber
 * positions, so StreamingLLM is refused on it by name.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import t from 'tap';
import { type GenerateRequest, type TokenEvent } from '../../src/engine/types.js';
import { createModel } from '../../src/model/create/create-model.js';
import type { Architecture } from '../../src/model/spec.js';
import { parsePolicyFile, type Policy } from '../../src/policies/registry.js';
import { openTestCore } from '../helpers/core.js';
import { tempDir } from '../helpers/session.js';
import { argmax, ReferenceModel } from '../reference/forward.js';
import { greedyRequest } from '../helpers/requests.js';

const root = tempDir('families');
const PROMPT = 48;
const STEPS = 10;

function policy(yaml: string): Policy {
  return parsePolicyFile(yaml, '<test>');
}

const KEEP_ALL: readonly Policy[] = [
  policy('name: snapkv-all\nkind: kv-eviction\nmethod: snapkv\nparams: {budget: 1, observationWindow: 16, compressEvery: 0}\n'),
  policy('name: h2o-all\nkind: kv-eviction\nmethod: h2o\nparams: {budget: 1, compressEvery: 1}\n'),
  policy('name: quest-all\nkind: sparse-attention\nmethod: quest\nparams: {pageSize: 16, budget: 1, denseLayers: 0}\n'),
];
const SNAPKV_25 = policy('name: snapkv-25\nkind: kv-eviction\nmethod: snapkv\nparams: {budget: 0.25}\n');
const QUEST = policy('name: quest-25\nkind: sparse-attention\nmethod: quest\nparams: {pageSize: 16, budget: 0.25, denseLayers: 0}\n');
const STREAMING = policy('name: streaming-llm-25\nkind: kv-eviction\nmethod: streaming-llm\nparams: {budget: 0.25, sinkTokens: 4, compressEvery: 1}\n');

function request(id: string, prompt: readonly number[], servingPolicy?: Policy): GenerateRequest {
  return greedyRequest(id, prompt, STEPS, servingPolicy, { captureLogprobs: true });
}

function done(events: TokenEvent[]): Extract<TokenEvent, { type: 'done' }> & { capturedLogprobs: Float32Array } {
  const last = events.at(-1);
  assert.ok(last?.type === 'done' && last.capturedLogprobs !== undefined);
  return last as Extract<TokenEvent, { type: 'done' }> & { capturedLogprobs: Float32Array };
}

function tokens(events: TokenEvent[]): number[] {
  return events.flatMap((e) => (e.type === 'token' ? [e.tokenId] : []));
}

function logSoftmax(row: Float64Array): Float64Array {
  let max = -Infinity;
  for (const v of row) max = Math.max(max, v);
  let sum = 0;
  for (const v of row) sum += Math.exp(v - max);
  const lse = max + Math.log(sum);
  return row.map((v) => v - lse);
}

interface Family {
  readonly name: string;
  readonly arch: Architecture;
  readonly overrides?: Record<string, unknown>;
  readonly rolling: boolean;
}

const FAMILIES: readonly Family[] = [
  { name: 'qwen3', arch: 'qwen3', rolling: true },
  { name: 'smollm3', arch: 'smollm3', rolling: true },
  { name: 'phi3 (longrope)', arch: 'phi3', rolling: false },
  { name: 'phi3 (partial rotary, no scaling)', arch: 'phi3', overrides: { rope_scaling: null }, rolling: true },
  { name: 'gemma3_text (sliding 16 and full layers)', arch: 'gemma3_text', rolling: true },
  { name: 'gemma2 (soft-capping, sliding 16 and full layers)', arch: 'gemma2', rolling: true },
];

for (const [i, f] of FAMILIES.entries()) {
  t.test(`${f.name}: the engine serves it as the reference computes it, under every KV policy`, async (t) => {
    const dir = join(root, `f${i}`);
    await createModel({ arch: f.arch, preset: 'tiny', seed: 300 + i, out: dir, ...(f.overrides ? { configOverrides: f.overrides } : {}) });
    const c = await openTestCore(dir, { prefillChunk: 64 });
    try {
      const spec = c.checkpoint.spec;
      const V = spec.vocabSize;
      const prompt = Array.from({ length: PROMPT }, (_, j) => 3 + ((j * 131 + 17 * i) % (V - 3)));
      const full = await c.generate(request('full', prompt));
      const fullDone = done(full);
      const ids = tokens(full);
      assert.equal(ids.length, STEPS);

      // The reference, fed the prompt as one pass and then each generated token.
      const ref = new ReferenceModel(spec, c.checkpoint.weights);
      let row = ref.append(prompt).at(-1);
      let worst = 0;
      for (let s = 0; s < STEPS; s++) {
        if (row === undefined) throw new Error('reference returned no logits');
        assert.equal(ids[s], argmax(row), `step ${s}: engine chose ${ids[s]}, reference ${argmax(row)}`);
        const want = logSoftmax(row);
        const got = fullDone.capturedLogprobs.subarray(s * V, (s + 1) * V);
        for (let v = 0; v < V; v++) worst = Math.max(worst, Math.abs(got[v]! - want[v]!));
        row = ref.append([ids[s]!])[0];
      }
      t.comment(`${f.name}: greedy ${STEPS} steps equal the reference's; max |log p - log p_ref| = ${worst.toExponential(2)}`);
      assert.ok(worst <= 1e-5, `log-softmax differs from the reference by ${worst}`);

      for (const p of KEEP_ALL) {
        const d = done(await c.generate(request(p.name, prompt, p)));
        let diff = 0;
        d.capturedLogprobs.forEach((v, j) => (diff = Math.max(diff, Math.abs(v - fullDone.capturedLogprobs[j]!))));
        t.comment(`${f.name} ${p.name}: max |log p - log p_full| = ${diff.toExponential(2)}`);
        assert.ok(diff <= 1e-5, `${p.name}: ${diff}`);
      }

      const snap = done(await c.generate(request('snapkv-25', prompt, SNAPKV_25)));
      t.comment(
        `${f.name} snapkv-25: kept ${snap.policy.kvTokensRetained.toFixed(1)} of ${snap.policy.contextTokens}, attention mass retained ${snap.policy.attentionMassRetained?.toFixed(3) ?? 'n/a'}`,
      );
      assert.ok(snap.policy.compressionRatio < 0.5, `snapkv-25 kept ${snap.policy.compressionRatio}`);
      const quest = await c.generate(request('quest-25', prompt, QUEST));
      assert.equal(tokens(quest).length, STEPS);
      if (f.rolling) {
        const s = done(await c.generate(request('streaming-llm-25', prompt, STREAMING)));
        t.comment(`${f.name} streaming-llm-25: kept ${s.policy.kvTokensRetained.toFixed(1)} of ${s.policy.contextTokens}`);
        assert.ok(s.policy.compressionRatio < 0.5);
      } else {
        await assert.rejects(c.generate(request('streaming-llm-25', prompt, STREAMING)), /invalid_request: .*streaming-llm-25.*longrope/);
      }
      assert.equal(c.core.stats().kvBytesUsed, 0);
    } finally {
      await c.close();
    }
  });
}
