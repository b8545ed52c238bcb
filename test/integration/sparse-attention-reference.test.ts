/**
 * The served sparse-attention paths against the float64 reference on a
 * generated checkpoint: the engine (policy runtime, step inputs, the decoder
 * graph's quest variant) generates with forced tokens and captured logprobs;
 * the reference runs the same tokens with the method's attention rule written
 * here from its paper (A-shape prefill; Quest's page bounds and top-k pages).
 * No JavaScript copy of the graph's selection exists in src/ to test instead.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import t from 'tap';
import { createModel } from '../../src/model/create/create-model.js';
import { parsePolicyFile, type Policy } from '../../src/policies/registry.js';
import { openTestCore } from '../helpers/core.js';
import { tempDir } from '../helpers/session.js';
import { ReferenceModel, type AttentionRule } from '../reference/forward.js';
import { greedyRequest } from '../helpers/requests.js';

const root = tempDir('sparse-ref');
const PROMPT = 100;
const STEPS = 6;

function policy(yaml: string): Policy {
  return parsePolicyFile(yaml, '<test>');
}

function logSoftmax(row: Float64Array): Float64Array {
  let max = -Infinity;
  for (const v of row) max = Math.max(max, v);
  let sum = 0;
  for (const v of row) sum += Math.exp(v - max);
  const lse = max + Math.log(sum);
  return row.map((v) => v - lse);
}

/** Quest (Tang et al., 2024) at decode: per KV head, the newest page plus the topPages pages whose bound sum_c max(q_c min_c, q_c max_c), maxed over the group's query heads, is highest. */
function questRule(
  numHeads: number,
  numKvHeads: number,
  headDim: number,
  pageSize: number,
  topPages: number,
  denseLayers: number,
  fromPos: number,
): AttentionRule {
  const group = numHeads / numKvHeads;
  return ({ layer, pos, query, keys }) => {
    if (pos < fromPos || layer < denseLayers) return null;
    const pages = Math.ceil(pos / pageSize); // pages of the past (the current token sees itself)
    if (topPages + 1 >= pages) return null;
    const chosen: Set<number>[] = [];
    for (let h = 0; h < numKvHeads; h++) {
      const score: Array<[number, number]> = [];
      for (let p = 0; p < pages - 1; p++) {
        let best = -Infinity;
        for (let g = 0; g < group; g++) {
          const qo = (h * group + g) * headDim;
          let bound = 0;
          for (let c = 0; c < headDim; c++) {
            let lo = Infinity;
            let hi = -Infinity;
            for (let j = p * pageSize; j < Math.min(pos, (p + 1) * pageSize); j++) {
              const v = keys[j]![h * headDim + c]!;
              lo = Math.min(lo, v);
              hi = Math.max(hi, v);
            }
            const qc = query[qo + c]!;
            bound += Math.max(qc * lo, qc * hi);
          }
          best = Math.max(best, bound);
        }
        score.push([best, p]);
      }
      score.sort((a, b) => b[0] - a[0]);
      chosen.push(new Set([...score.slice(0, topPages).map(([, p]) => p), pages - 1]));
    }
    return (h, j) => j === pos || chosen[h]!.has(Math.floor(j / pageSize));
  };
}

/** A-shape during prefill: the first sinkTokens positions and the windowTokens most recent ones; decoding is dense. */
function sinkWindowRule(sinkTokens: number, windowTokens: number, prefillEnd: number): AttentionRule {
  return ({ pos }) => (pos >= prefillEnd ? null : (_h, j) => j <= pos && (j < sinkTokens || pos - j < windowTokens));
}

async function compareWithReference(
  dir: string,
  served: Policy,
  rule: (n: { numHeads: number; numKvHeads: number; headDim: number }) => AttentionRule,
): Promise<number> {
  const c = await openTestCore(dir, { prefillChunk: 32 });
  try {
    const spec = c.checkpoint.spec;
    const V = spec.vocabSize;
    const prompt = Array.from({ length: PROMPT }, (_, i) => 3 + ((i * 131 + 7) % (V - 3)));
    const forced = Array.from({ length: STEPS }, (_, i) => 5 + ((i * 53) % (V - 5)));
    const request = greedyRequest(`ref-${served.name}`, prompt, STEPS, served, { forcedTokens: forced, captureLogprobs: true });
    const done = (await c.generate(request)).at(-1);
    assert.ok(done?.type === 'done' && done.capturedLogprobs, 'the engine captured its rows');
    const rows = done.capturedLogprobs;
    const ref = new ReferenceModel(spec, c.checkpoint.weights);
    ref.attentionRule = rule(spec);
    const want = [ref.append(prompt).at(-1)!, ...ref.append(forced.slice(0, STEPS - 1))];
    let maxDiff = 0;
    want.forEach((w, s) => {
      const lw = logSoftmax(w);
      for (let i = 0; i < V; i++) maxDiff = Math.max(maxDiff, Math.abs(rows[s * V + i]! - lw[i]!));
    });
    return maxDiff;
  } finally {
    await c.close();
  }
}

t.test('quest decoding on the compiled graph matches the float64 reference with Quest page selection', async (t) => {
  const dir = join(root, 'quest');
  await createModel({ arch: 'llama', preset: 'tiny', seed: 7, out: dir });
  const served = policy('name: quest-ref\nkind: sparse-attention\nmethod: quest\nparams: {pageSize: 16, topPages: 2, denseLayers: 1}\n');
  const diff = await compareWithReference(dir, served, (s) => questRule(s.numHeads, s.numKvHeads, s.headDim, 16, 2, 1, PROMPT));
  t.comment(`quest: max |log-prob diff| ${diff.toExponential(2)}`);
  assert.ok(diff < 1e-4, `max |diff| ${diff}`);
  // The rule matters: dense attention differs from it on this model.
  const dense = await compareWithReference(dir, served, () => () => null);
  t.comment(`quest against dense attention: max |diff| ${dense.toExponential(2)}`);
  assert.ok(dense > 10 * diff, 'the selection changes the result, so agreement is not trivial');
});

t.test('sink-window prefill on the served step inputs matches the float64 reference with the A-shape mask', async (t) => {
  const dir = join(root, 'sink-window');
  await createModel({ arch: 'llama', preset: 'tiny', seed: 8, out: dir });
  const served = policy('name: sw-ref\nkind: sparse-attention\nmethod: sink-window\nparams: {sinkTokens: 4, windowTokens: 24}\n');
  const diff = await compareWithReference(dir, served, () => sinkWindowRule(4, 24, PROMPT));
  t.comment(`sink-window: max |log-prob diff| ${diff.toExponential(2)}`);
  assert.ok(diff < 1e-4, `max |diff| ${diff}`);
  const dense = await compareWithReference(dir, served, () => () => null);
  assert.ok(dense > 10 * diff, 'the mask changes the result, so agreement is not trivial');
});
