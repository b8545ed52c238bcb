/**
 * Cached decoding must equal recomputation: prefill-all-at-once vs token-by-token,
 * chunked prefill, and batched decode vs single-sequence decode (padding masked).
 */
import assert from 'node:assert/strict';
import t from 'tap';
import type { SequenceKv } from '../../../src/kv/sequence-kv.js';
import { missingShared, STORIES_DIR } from '../../helpers/shared.js';
import { maxAbsDiff, openTestModel } from '../../helpers/session.js';

const skip = missingShared('models', 'stories260K');
const PROMPT = [1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 13, 441, 416, 411];

t.test('prefill all at once equals token-by-token decoding with the cache', { skip: skip ?? false }, async () => {
  const m = await openTestModel(STORIES_DIR);
  try {
    const V = m.checkpoint.spec.vocabSize;
    const { logits: all } = await m.prefill(PROMPT, true);
    const kv = m.newKv(PROMPT.length);
    for (let t = 0; t < PROMPT.length; t++) {
      const out = await m.session.run(m.inputs.decode([kv], [PROMPT[t] ?? 0], [t]));
      kv.append(out.presentKeys, out.presentValues, 0, 1, [t]);
      const diff = maxAbsDiff(out.logits, all.subarray(t * V, (t + 1) * V));
      assert.ok(diff <= 1e-4, `position ${t}: max abs diff ${diff}`);
    }
  } finally {
    await m.close();
  }
});

t.test('chunked prefill equals one-shot prefill', { skip: skip ?? false }, async () => {
  const m = await openTestModel(STORIES_DIR);
  try {
    const { logits: whole } = await m.prefill(PROMPT);
    const { logits: last } = await m.prefill(PROMPT, false, 0, 7);
    assert.ok(maxAbsDiff(last, whole) <= 1e-4);
  } finally {
    await m.close();
  }
});

t.test('batched decode of sequences with different lengths equals single-sequence decode, as members leave and join', { skip: skip ?? false }, async () => {
  const m = await openTestModel(STORIES_DIR);
  try {
    const V = m.checkpoint.spec.vocabSize;
    interface Member {
      readonly single: SequenceKv;
      readonly batched: SequenceKv;
      readonly token: number;
    }
    const join = async (prompt: readonly number[], token: number): Promise<Member> => ({
      single: (await m.prefill(prompt)).kv,
      batched: (await m.prefill(prompt)).kv,
      token,
    });
    let members: Member[] = [await join(PROMPT.slice(0, 3), 300), await join(PROMPT.slice(0, 11), 301), await join(PROMPT, 302)];
    for (let step = 0; step < 7; step++) {
      // Step 2: the middle sequence leaves and a new one joins; step 4: the first leaves.
      if (step === 2) members = [members[0], members[2], await join(PROMPT.slice(0, 7), 303)].filter((x): x is Member => x !== undefined);
      if (step === 4) members = members.slice(1);
      // The group's gathered past keeps rows in place (what the engine does); any order must give the same logits.
      const order = m.inputs.decodeOrder(
        'group',
        members.map((x) => x.batched),
      );
      const rows = order.map((i) => members[i] as Member);
      const positions = rows.map((x) => x.batched.nextPosition);
      const out = await m.session.run(
        m.inputs.decode(
          rows.map((x) => x.batched),
          rows.map((x) => x.token),
          positions,
          null,
          'group',
        ),
      );
      for (const [b, x] of rows.entries()) {
        const one = await m.session.run(m.inputs.decode([x.single], [x.token], [x.single.nextPosition]));
        x.single.append(one.presentKeys, one.presentValues, 0, 1, [x.single.nextPosition]);
        x.batched.append(out.presentKeys, out.presentValues, b, 1, [positions[b] ?? 0]);
        const diff = maxAbsDiff(out.logits.subarray(b * V, (b + 1) * V), one.logits);
        assert.ok(diff <= 1e-4, `step ${step} row ${b}: max abs diff ${diff}`);
      }
    }
  } finally {
    await m.close();
  }
});

t.test('several fresh prompts prefilled in one padded pass equal one-at-a-time prefill (logits and cache)', { skip: skip ?? false }, async () => {
  const m = await openTestModel(STORIES_DIR);
  try {
    const V = m.checkpoint.spec.vocabSize;
    const prompts = [PROMPT.slice(0, 3), PROMPT, PROMPT.slice(0, 1), PROMPT.slice(0, 12)];
    const inputs = m.inputs.prefillFresh(prompts);
    const out = await m.session.run(inputs);
    for (const [b, p] of prompts.entries()) {
      const single = await m.prefill(p);
      assert.ok(maxAbsDiff(out.logits.subarray(b * V, (b + 1) * V), single.logits) <= 1e-4, `row ${b}`);
      const kv = m.newKv(p.length + 4);
      kv.append(
        out.presentKeys,
        out.presentValues,
        b,
        inputs.newTokens,
        p.map((_, i) => i),
      );
      // The next decode step from either cache gives the same logits.
      const a = await m.session.run(m.inputs.decode([kv], [42], [p.length]));
      const c = await m.session.run(m.inputs.decode([single.kv], [42], [p.length]));
      assert.ok(maxAbsDiff(a.logits, c.logits) <= 1e-4, `decode after row ${b}`);
    }
  } finally {
    await m.close();
  }
});
