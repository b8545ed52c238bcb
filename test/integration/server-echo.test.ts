/**
 * `echo` with `logprobs` on /v1/completions (issue 11), through the openai SDK
 * against the real server on stories260K: prompt logprobs equal teacher-forced
 * log-probabilities computed in-process, and perplexity through echo equals
 * golden.json's within 1e-4 relative (what lm-evaluation-harness computes).
 */
import t from 'tap';
import assert from 'node:assert/strict';
import { storiesSkip, useStoriesServer } from './stories-server.js';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import OpenAI from 'openai';
import { openTestModel } from '../helpers/session.js';

const skip = storiesSkip;
const MODEL = 'stories260K';
const fx = useStoriesServer({ timeoutMs: 60000 });

/** Log-softmax rows of a full forward pass over `ids`, in process (no server). */
async function teacherForced(ids: readonly number[]): Promise<Float64Array[]> {
  const model = await openTestModel(fx().modelDir);
  try {
    const { logits } = await model.prefill([...ids], true);
    const V = model.checkpoint.spec.vocabSize;
    const rows: Float64Array[] = [];
    for (let t = 0; t < ids.length; t++) {
      const row = logits.subarray(t * V, (t + 1) * V);
      let max = -Infinity;
      for (const v of row) max = Math.max(max, v);
      let sum = 0;
      for (const v of row) sum += Math.exp(v - max);
      rows.push(Float64Array.from(row, (v) => v - max - Math.log(sum)));
    }
    return rows;
  } finally {
    await model.close();
  }
}

t.test('echo + logprobs, max_tokens 0: prompt logprobs equal teacher-forced ones; first is null', { skip }, async () => {
  const text = 'Once upon a time, there was a little girl named Lily.';
  const ids = fx().tok.encode(text);
  const res = await fx().client.completions.create({ model: MODEL, prompt: text, max_tokens: 0, echo: true, logprobs: 3 });
  const choice = res.choices[0];
  assert.ok(choice);
  assert.equal(choice.text, text);
  assert.equal(choice.finish_reason, 'length');
  assert.deepEqual(res.usage, { prompt_tokens: ids.length, completion_tokens: 0, total_tokens: ids.length, prompt_tokens_details: { cached_tokens: 0 } });
  const lp = choice.logprobs;
  assert.ok(lp);
  assert.equal(lp.tokens?.length, ids.length);
  assert.equal(lp.token_logprobs?.[0], null);
  assert.equal(lp.top_logprobs?.[0], null);
  assert.equal(lp.tokens?.slice(1).join(''), text);
  const rows = await teacherForced(ids);
  for (let i = 1; i < ids.length; i++) {
    const row = rows[i - 1] as Float64Array;
    const got: number = lp.token_logprobs?.[i] ?? NaN;
    assert.ok(Math.abs(got - (row[ids[i] ?? 0] ?? 0)) < 1e-4, `position ${i}: ${got} vs ${row[ids[i] ?? 0]}`);
    const order = Array.from(row.keys())
      .sort((a, b) => (row[b] ?? 0) - (row[a] ?? 0) || a - b)
      .slice(0, 3);
    const top: Record<string, number> = lp.top_logprobs?.[i] ?? {};
    const context = ids.slice(0, i);
    for (const alt of order) {
      const key = fx().tok.tokenText(context, alt, { skipSpecialTokens: true });
      assert.ok(Math.abs((top[key] ?? NaN) - (row[alt] ?? 0)) < 1e-4, `position ${i}: ${JSON.stringify(key)} in ${JSON.stringify(top)}`);
    }
    // The prompt token itself is always listed (as OpenAI and vLLM do).
    assert.equal(top[lp.tokens?.[i] ?? ''], got);
    assert.equal(lp.text_offset?.[i], fx().tok.decode(ids.slice(0, i), { skipSpecialTokens: true }).length);
  }
});

t.test('echo with generation: prompt text + completion, prompt entries then generated ones; streaming too', { skip }, async () => {
  const text = 'Once upon a time,';
  const n = fx().tok.encode(text).length;
  const res = await fx().client.completions.create({ model: MODEL, prompt: text, max_tokens: 3, temperature: 0, echo: true, logprobs: 1 });
  const plain = await fx().client.completions.create({ model: MODEL, prompt: text, max_tokens: 3, temperature: 0 });
  const choice = res.choices[0];
  assert.equal(choice?.text, text + (plain.choices[0]?.text ?? ''));
  assert.equal(choice?.logprobs?.tokens?.length, n + 3);
  assert.equal(choice?.logprobs?.text_offset?.[n], text.length);
  const stream = await fx().client.completions.create({ model: MODEL, prompt: text, max_tokens: 3, temperature: 0, echo: true, stream: true });
  let streamed = '';
  for await (const chunk of stream) streamed += chunk.choices[0]?.text ?? '';
  assert.equal(streamed, choice?.text);
  await assert.rejects(
    fx().client.completions.create({ model: MODEL, prompt: text, max_tokens: 0 }),
    (err: unknown) => err instanceof OpenAI.BadRequestError && err.param === 'max_tokens',
  );
});

t.test('perplexity through echo equals golden.json within 1e-4 relative', { skip }, async () => {
  const g = (
    JSON.parse(readFileSync(join(fx().modelDir, 'golden.json'), 'utf8')) as {
      perplexity_tinystories_first2000: { ids: number[]; window: number; perplexity: number };
    }
  ).perplexity_tinystories_first2000;
  let nll = 0;
  let scored = 0;
  for (let start = 0; start < g.ids.length; start += g.window) {
    const window = g.ids.slice(start, start + g.window);
    const res = await fx().client.completions.create({ model: MODEL, prompt: window, max_tokens: 0, echo: true, logprobs: 0 });
    const lps = res.choices[0]?.logprobs?.token_logprobs ?? [];
    assert.equal(lps.length, window.length);
    for (const v of lps.slice(1)) {
      nll -= v;
      scored += 1;
    }
  }
  const ppl = Math.exp(nll / scored);
  assert.ok(Math.abs(ppl - g.perplexity) / g.perplexity < 1e-4, `perplexity ${ppl} vs golden ${g.perplexity}`);
});

t.test('a prompt list: 3 prompts (strings and id lists) with n=2 give six choices, index = prompt_i * n + j; streaming too', { skip }, async () => {
  const texts = ['Once upon a time,', 'Lily and Ben went to the park.', 'The sun'];
  const singles = await Promise.all(texts.map((prompt) => fx().client.completions.create({ model: MODEL, prompt, max_tokens: 5, temperature: 0 })));
  const expected = singles.map((r) => r.choices[0]?.text ?? 'x');
  const promptTokens = texts.reduce((sum, t) => sum + fx().tok.encode(t).length, 0);
  for (const prompt of [texts, texts.map((t) => fx().tok.encode(t))]) {
    const res = await fx().client.completions.create({ model: MODEL, prompt, n: 2, max_tokens: 5, temperature: 0 });
    assert.deepEqual(
      res.choices.map((c) => c.index),
      [0, 1, 2, 3, 4, 5],
    );
    assert.deepEqual(
      res.choices.map((c) => c.text),
      expected.flatMap((e) => [e, e]),
    );
    assert.equal(res.usage?.prompt_tokens, promptTokens);
    assert.equal(res.usage?.completion_tokens, 30);
  }
  const stream = await fx().client.completions.create({
    model: MODEL,
    prompt: texts,
    n: 2,
    max_tokens: 5,
    temperature: 0,
    stream: true,
    stream_options: { include_usage: true },
  });
  const streamed = new Array<string>(6).fill('');
  let usage: OpenAI.CompletionUsage | null | undefined = null;
  for await (const chunk of stream) {
    for (const c of chunk.choices) streamed[c.index] += c.text;
    if (chunk.usage) usage = chunk.usage;
  }
  assert.deepEqual(
    streamed,
    expected.flatMap((e) => [e, e]),
  );
  assert.equal(usage?.prompt_tokens, promptTokens);
  // echo with a list: each choice echoes its own prompt.
  const echoed = await fx().client.completions.create({ model: MODEL, prompt: texts, max_tokens: 0, echo: true, logprobs: 0 });
  assert.deepEqual(
    echoed.choices.map((c) => c.text),
    texts,
  );
  assert.deepEqual(
    echoed.choices.map((c) => c.logprobs?.tokens?.length),
    texts.map((t) => fx().tok.encode(t).length),
  );
});
