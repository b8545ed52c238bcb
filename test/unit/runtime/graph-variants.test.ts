/**
 * One session serves every graph variant: the plain, statistics and Quest
 * runners of a compiled model are views of one onnxruntime session (one copy of
 * the weights). Each view's logits and new KV must equal what the graph built
 * as that variant alone (compile option variants: 'plain') gives, the
 * statistics view must return real statistics, and a Quest step that keeps
 * every page must equal the plain step.
 */
import assert from 'node:assert/strict';
import t from 'tap';
import type { DecoderStepInputs } from '../../../src/model/step-io.js';
import { missingShared, STORIES_DIR } from '../../helpers/shared.js';
import { maxAbsDiff, openTestModel } from '../../helpers/session.js';

const skip = missingShared('models', 'stories260K');
const PROMPT = [1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 13, 441, 416, 411];

function argmax(a: Float32Array): number {
  let best = 0;
  for (let i = 1; i < a.length; i++) if ((a[i] ?? -Infinity) > (a[best] ?? -Infinity)) best = i;
  return best;
}

t.test('plain, statistics and Quest views of one session equal the plain-only graph', { skip: skip ?? false }, async () => {
  const served = await openTestModel(STORIES_DIR);
  const plainOnly = await openTestModel(STORIES_DIR, 'fp32', false, { variants: 'plain' });
  try {
    assert.deepEqual(served.session.variants, ['plain', 'stats', 'quest']);
    assert.deepEqual(plainOnly.session.variants, ['plain']);
    assert.throws(() => plainOnly.session.variant('stats'), /no stats variant/);
    const spec = served.checkpoint.spec;

    const a = await served.prefill(PROMPT, true);
    const b = await plainOnly.prefill(PROMPT, true);
    assert.equal(maxAbsDiff(a.logits, b.logits), 0, 'prefill logits of the served graph equal the plain-only graph exactly');

    const step = (extra: Partial<DecoderStepInputs> = {}): DecoderStepInputs => ({ ...served.inputs.decode([a.kv], [300], [PROMPT.length], 4), ...extra });
    const plain = await served.session.run(step());
    const alone = await plainOnly.session.run(plainOnly.inputs.decode([b.kv], [300], [PROMPT.length]));
    // The served graph decodes through the lean core (its value product as one-row products), the
    // plain-only graph through the general core: the same arithmetic up to float rounding.
    const rounding = 1e-5 * Math.max(...alone.logits.map(Math.abs));
    assert.ok(maxAbsDiff(plain.logits, alone.logits) <= rounding, `decode logits differ by ${maxAbsDiff(plain.logits, alone.logits)}`);
    assert.equal(argmax(plain.logits), argmax(alone.logits));
    for (let l = 0; l < spec.numLayers; l++) assert.ok(maxAbsDiff(plain.presentKeys[l] ?? [], alone.presentKeys[l] ?? []) <= 1e-5, `layer ${l} keys`);
    assert.equal(plain.attnSum, null, 'the plain view fetches no statistics');

    const stats = await served.session.variant('stats').run(step());
    assert.equal(maxAbsDiff(stats.logits, alone.logits), 0, 'the statistics core attends exactly as the general one');
    assert.ok(maxAbsDiff(stats.logits, plain.logits) <= rounding, 'and as the lean one to float rounding');
    const capacity = step().layers[0]?.capacity ?? 0;
    const sums = stats.attnSum?.[0];
    assert.ok(sums !== undefined && sums.length === spec.numKvHeads * (capacity + 1), `attn_sum_0 has ${sums?.length} values`);
    // Each KV head's sum over entries is its group's query heads (one query each): G.
    const G = spec.numHeads / spec.numKvHeads;
    for (let h = 0; h < spec.numKvHeads; h++) {
      const total = sums.subarray(h * (capacity + 1), (h + 1) * (capacity + 1)).reduce((x, y) => x + y, 0);
      assert.ok(Math.abs(total - G) < 1e-4, `head ${h}: attention received sums to ${total}, expected ${G}`);
    }

    // Quest with every page kept (k = all pages, no page blocked) attends the whole cache.
    const pageSize = 4;
    const pages = capacity / pageSize;
    const { numKvHeads: KV, headDim: D } = spec;
    const layers = Array.from({ length: spec.numLayers }, () => ({
      min: new Float32Array(KV * pages * D),
      max: new Float32Array(KV * pages * D),
      bias: new Float32Array(KV * pages),
      pages,
      k: pages,
    }));
    const quest = await served.session.variant('quest').run(step({ quest: { pageSize, layers } }));
    assert.ok(maxAbsDiff(quest.logits, plain.logits) <= 1e-5, `Quest keeping every page differs from plain by ${maxAbsDiff(quest.logits, plain.logits)}`);
    a.kv.release();
    b.kv.release();
  } finally {
    await served.close();
    await plainOnly.close();
  }
});
