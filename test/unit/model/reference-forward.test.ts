import t from 'tap';
import assert from 'node:assert/strict';
import { loadCheckpoint } from '../../../src/model/checkpoint.js';
import { createModel } from '../../../src/model/create/create-model.js';
import { parseModelSpec } from '../../../src/model/hf-config.js';
import type { ModelSpec } from '../../../src/model/spec.js';
import { ReferenceModel, argmax, referenceGreedy, referenceLogits, ropeInvFreq } from '../../reference/forward.js';
import { MISSING_SHARED, loadGolden, sharedPath, tempDir } from './fixtures.js';

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

function logSoftmaxAt(logits: Float64Array, id: number): number {
  let max = -Infinity;
  for (const v of logits) if (v > max) max = v;
  let sum = 0;
  for (const v of logits) sum += Math.exp(v - max);
  return logits[id]! - max - Math.log(sum);
}

t.test('stories260K: first-step logits within 1e-6 and 64 greedy steps equal golden.json', async (t) => {
  const dir = sharedPath('models', 'stories260K');
  if (dir === null) return t.plan(0, MISSING_SHARED);
  const golden = loadGolden(dir);
  const ck = loadCheckpoint(dir);
  for (const p of golden.prompts) {
    const model = new ReferenceModel(ck.spec, ck.weights);
    const logits = model.append(p.input_ids).at(-1)!;
    const diff = maxAbsDiff(logits, p.first_step_logits);
    assert.ok(diff < 1e-6, `${p.name}: first-step logits differ by ${diff}`);
    const greedy = [argmax(logits)];
    while (greedy.length < p.greedy_ids.length) greedy.push(argmax(model.append([greedy.at(-1)!])[0]!));
    assert.deepEqual(greedy, p.greedy_ids, `${p.name}: greedy ids`);
    assert.equal(ck.tokenizer.decode(greedy, { skipSpecialTokens: true }), p.greedy_text);
  }
});

t.test('stories260K: perplexity windows of golden.json within 1e-6 nats', async (t) => {
  const dir = sharedPath('models', 'stories260K');
  if (dir === null) return t.plan(0, MISSING_SHARED);
  const { perplexity_tinystories_first2000: ppl } = loadGolden(dir);
  const ck = loadCheckpoint(dir);
  let total = 0;
  let scored = 0;
  for (const w of ppl.windows) {
    const ids = ppl.ids.slice(w.start, w.start + w.len);
    const logits = referenceLogits(ck.spec, ck.weights, ids);
    let nll = 0;
    for (let i = 0; i + 1 < ids.length; i++) nll -= logSoftmaxAt(logits[i]!, ids[i + 1]!);
    assert.equal(ids.length - 1, w.scored);
    assert.ok(Math.abs(nll / w.scored - w.mean_nats) < 1e-6, `window at ${w.start}: ${nll / w.scored} vs ${w.mean_nats}`);
    total += nll;
    scored += w.scored;
  }
  assert.ok(Math.abs(total / scored - ppl.mean_nats_per_token) < 1e-6);
});

t.test('referenceGreedy agrees with argmax over one full pass, and generated logits are not flat', async () => {
  const { dir } = await createModel({ arch: 'qwen2', preset: 'tiny', seed: 3, out: tempDir('ref-qwen2') });
  const ck = loadCheckpoint(dir);
  const ids = ck.tokenizer.encode('The little dog ran to the park');
  const greedy = referenceGreedy(ck.spec, ck.weights, ids, 5);
  const all = referenceLogits(ck.spec, ck.weights, [...ids, ...greedy]);
  for (let i = 0; i < greedy.length; i++) assert.equal(argmax(all[ids.length - 1 + i]!), greedy[i]);
  // The generated model must not be degenerate: logits spread out, not all equal.
  const last = all.at(-1)!;
  const max = Math.max(...last);
  const min = Math.min(...last);
  assert.ok(max - min > 2, `logit range ${max - min} is too flat to test with`);
});

t.test('sliding window follows HF semantics: the query at i sees keys j with i - window < j <= i', async () => {
  const { dir } = await createModel({ arch: 'mistral', preset: 'tiny', seed: 5, out: tempDir('ref-mistral') });
  const ck = loadCheckpoint(dir);
  const spec = ck.spec;
  assert.equal(spec.slidingWindow, 16);
  const ids = Array.from({ length: 40 }, (_, i) => 10 + ((i * 37) % 400));
  const full = referenceLogits(spec, ck.weights, ids).at(-1)!;
  // With L layers each reaching back window-1 tokens, position i depends on exactly the
  // last L*(window-1)+1 tokens; RoPE is relative, so shifting them to position 0 changes nothing.
  const reach = spec.numLayers * (spec.slidingWindow! - 1) + 1;
  const enough = referenceLogits(spec, ck.weights, ids.slice(-reach)).at(-1)!;
  assert.ok(maxAbsDiff(full, enough) < 1e-9, `last ${reach} tokens should determine the output`);
  const tooFew = referenceLogits(spec, ck.weights, ids.slice(-(reach - 1))).at(-1)!;
  assert.ok(maxAbsDiff(full, tooFew) > 1e-6, `dropping token i - ${reach - 1} must change the output`);
  // Without the window the far tokens matter.
  const noWindow: ModelSpec = { ...spec, slidingWindow: null, layerWindows: spec.layerWindows.map(() => null) };
  const unwindowed = referenceLogits(noWindow, ck.weights, ids).at(-1)!;
  assert.ok(maxAbsDiff(full, unwindowed) > 1e-6);
});

t.test('q/k/v biases are applied (qwen2)', async () => {
  const { dir } = await createModel({ arch: 'qwen2', preset: 'tiny', seed: 9, out: tempDir('ref-bias') });
  const ck = loadCheckpoint(dir);
  assert.ok(ck.spec.attentionBias);
  const ids = [0, 50, 60, 70];
  const withBias = referenceLogits(ck.spec, ck.weights, ids).at(-1)!;
  const zeroBias = {
    names: () => ck.weights.names(),
    has: (n: string) => ck.weights.has(n),
    get: (n: string) => {
      const w = ck.weights.get(n);
      return n.endsWith('.bias') ? { shape: w.shape, data: new Float32Array(w.data.length) } : w;
    },
  };
  const without = referenceLogits(ck.spec, zeroBias, ids).at(-1)!;
  assert.ok(maxAbsDiff(withBias, without) > 1e-3);
});

t.test('rope inv_freq: default, linear and llama3 scaling as transformers computes them', async () => {
  const base = {
    model_type: 'llama',
    hidden_size: 4096,
    num_hidden_layers: 1,
    num_attention_heads: 32,
    intermediate_size: 14336,
    vocab_size: 128256,
    rope_theta: 500000,
  };
  const plain = ropeInvFreq(parseModelSpec(base, null, 'config.json'));
  assert.equal(plain.length, 64);
  assert.equal(plain[0], 1);
  assert.ok(Math.abs(plain[1]! - 500000 ** (-2 / 128)) < 1e-18);
  const linear = ropeInvFreq(parseModelSpec({ ...base, rope_scaling: { type: 'linear', factor: 4 } }, null, 'config.json'));
  for (let i = 0; i < 64; i++) assert.equal(linear[i], plain[i]! / 4);
  // Llama 3.1's published rope settings.
  const l3 = ropeInvFreq(
    parseModelSpec(
      { ...base, rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 } },
      null,
      'config.json',
    ),
  );
  let high = 0;
  let low = 0;
  let medium = 0;
  for (let i = 0; i < 64; i++) {
    const wavelen = (2 * Math.PI) / plain[i]!;
    if (wavelen < 8192 / 4) {
      assert.equal(l3[i], plain[i], `high-frequency component ${i} is unchanged`);
      high++;
    } else if (wavelen > 8192 / 1) {
      assert.equal(l3[i], plain[i]! / 8, `low-frequency component ${i} is divided by factor`);
      low++;
    } else {
      const smooth = (8192 / wavelen - 1) / (4 - 1);
      const expected = (1 - smooth) * (plain[i]! / 8) + smooth * plain[i]!;
      assert.ok(Math.abs(l3[i]! - expected) < 1e-15 * plain[i]!, `medium component ${i} is interpolated`);
      assert.ok(l3[i]! < plain[i]! && l3[i]! > plain[i]! / 8);
      medium++;
    }
  }
  assert.ok(high > 0 && low > 0 && medium > 0, `${high}/${medium}/${low}`);
});
