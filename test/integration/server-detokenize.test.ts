/**
 * Text and logprob strings as real clients see them (issue 11, bugs 1, 2, 4), through
 * the official openai SDK against the real server on stories260K: prompt + completion
 * equals decode(prompt ids + completion ids); streamed deltas join to the same text;
 * every top_logprobs key is the in-context decode of a token.
 */
import t from 'tap';
import assert from 'node:assert/strict';
import { storiesSkip, useStoriesServer } from './stories-server.js';
import OpenAI from 'openai';
import { goldenPrompts } from './server-harness.js';

const skip = storiesSkip;
const MODEL = 'stories260K';
const fx = useStoriesServer({ timeoutMs: 20000 });

const decode = (ids: readonly number[]): string => fx().tok.decode(ids, { skipSpecialTokens: true });

/** Every vocabulary id whose in-context string (among all ids at that position, kept distinct) is `text`. */
function idsWithText(context: readonly number[], text: string): number[] {
  const all = Array.from({ length: fx().tok.vocabSize }, (_, id) => id);
  const texts = fx().tok.tokenTexts(context, all, { skipSpecialTokens: true });
  return all.filter((id) => texts[id] === text);
}

t.test('completions: the first token keeps its leading space; prompt + text = decode(prompt ids + completion ids)', { skip }, async () => {
  const res = await fx().client.completions.create({ model: MODEL, prompt: 'Once upon a time,', max_tokens: 2, temperature: 0 });
  assert.equal(res.choices[0]?.text, ' there was');
  for (const p of goldenPrompts(fx().modelDir)) {
    const n = 24;
    const r = await fx().client.completions.create({ model: MODEL, prompt: p.input_ids, max_tokens: n, temperature: 0 });
    const expected = decode([...p.input_ids, ...p.greedy_ids.slice(0, n)]).slice(decode(p.input_ids).length);
    assert.equal(r.choices[0]?.text, expected, p.name);
    assert.equal(decode(p.input_ids) + (r.choices[0]?.text ?? ''), decode([...p.input_ids, ...p.greedy_ids.slice(0, n)]), p.name);
    // Streamed deltas join to the same text.
    const stream = await fx().client.completions.create({ model: MODEL, prompt: p.input_ids, max_tokens: n, temperature: 0, stream: true });
    let streamed = '';
    for await (const chunk of stream) streamed += chunk.choices[0]?.text ?? '';
    assert.equal(streamed, expected, `${p.name} streamed`);
  }
});

t.test('chat: content and streamed deltas keep the first token in context', { skip }, async () => {
  const messages = [{ role: 'user' as const, content: 'Once upon a time,' }];
  const res = await fx().client.chat.completions.create({ model: MODEL, messages, max_tokens: 10, temperature: 0, logprobs: true });
  const content = res.choices[0]?.message.content ?? '';
  const entries = res.choices[0]?.logprobs?.content ?? [];
  assert.equal(entries.map((e) => e.token).join(''), content);
  // Recover the completion ids from their in-context strings, then: content = decode(prompt + ids) - decode(prompt).
  const tokenized = await fetch(`${fx().server.baseUrl}/tokenize`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ messages }),
  });
  const prompt = ((await tokenized.json()) as { tokens: number[] }).tokens;
  const ids = [...prompt];
  for (const e of entries) {
    const found = idsWithText(ids, e.token);
    assert.equal(found.length, 1, `${JSON.stringify(e.token)} after ${JSON.stringify(decode(ids.slice(-6)))} -> ${found.join(',')}`);
    ids.push(found[0] ?? -1);
  }
  assert.equal(content, decode(ids).slice(decode(prompt).length));
  const stream = await fx().client.chat.completions.create({ model: MODEL, messages, max_tokens: 10, temperature: 0, stream: true });
  let streamed = '';
  for await (const chunk of stream) streamed += chunk.choices[0]?.delta.content ?? '';
  assert.equal(streamed, content);
});

t.test('top_logprobs keys are the in-context decode of each alternative, never colliding; logprobs: 0 lists the sampled token', { skip }, async () => {
  const prompt = fx().tok.encode('Once upon a time,');
  const res = await fx().client.completions.create({ model: MODEL, prompt, max_tokens: 6, temperature: 0, logprobs: 5 });
  const lp = res.choices[0]?.logprobs;
  assert.ok(lp);
  assert.equal(lp.tokens?.[0], ' there');
  assert.equal(lp.tokens?.join(''), res.choices[0]?.text);
  const context = [...prompt];
  lp.tokens?.forEach((token, i) => {
    const top = lp.top_logprobs?.[i] ?? {};
    assert.equal(Object.keys(top).length, 5, `position ${i}: ${JSON.stringify(top)}`);
    assert.equal(top[token], lp.token_logprobs?.[i]);
    for (const key of Object.keys(top)) assert.ok(idsWithText(context, key).length > 0, `position ${i}: key ${JSON.stringify(key)}`);
    const chosen = idsWithText(context, token);
    assert.equal(chosen.length, 1, `position ${i}: ${JSON.stringify(token)} -> ${chosen.join(',')}`);
    context.push(chosen[0] ?? -1);
  });
  const chat = await fx().client.chat.completions.create({
    model: MODEL,
    messages: [{ role: 'user', content: 'Once upon a time,' }],
    max_tokens: 4,
    temperature: 0,
    logprobs: true,
    top_logprobs: 5,
  });
  for (const entry of chat.choices[0]?.logprobs?.content ?? []) {
    const keys = entry.top_logprobs.map((t) => t.token);
    assert.equal(new Set(keys).size, keys.length, JSON.stringify(keys));
    assert.ok(keys.includes(entry.token), `greedy ${JSON.stringify(entry.token)} among ${JSON.stringify(keys)}`);
  }
  const zero = await fx().client.completions.create({ model: MODEL, prompt, max_tokens: 3, temperature: 0, logprobs: 0 });
  const zlp = zero.choices[0]?.logprobs;
  zlp?.tokens?.forEach((token, i) => assert.deepEqual(zlp.top_logprobs?.[i], { [token]: zlp.token_logprobs?.[i] }));
  assert.equal(zlp?.tokens?.length, 3);
});

t.test('out-of-vocabulary logit_bias keys and stop_token_ids: 400 naming the parameter and every bad id', { skip }, async () => {
  const post = async (path: string, body: unknown): Promise<{ status: number; error: { type: string; param: string; message: string } }> => {
    const res = await fetch(`${fx().server.baseUrl}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    return { status: res.status, error: ((await res.json()) as { error: { type: string; param: string; message: string } }).error };
  };
  const bias = await post('/v1/completions', { prompt: 'Once', max_tokens: 2, logit_bias: { '5': 1, '512': 2, '99999': -3 } });
  assert.equal(bias.status, 400);
  assert.equal(bias.error.type, 'invalid_request_error');
  assert.equal(bias.error.param, 'logit_bias');
  assert.match(bias.error.message, /512, 99999/);
  const chat = await post('/v1/chat/completions', { messages: [{ role: 'user', content: 'hi' }], max_tokens: 2, logit_bias: { '600': 1 } });
  assert.equal(chat.status, 400);
  assert.equal(chat.error.param, 'logit_bias');
  const stops = await post('/v1/completions', { prompt: 'Once', max_tokens: 2, stop_token_ids: [2, 512, 1000] });
  assert.equal(stops.status, 400);
  assert.equal(stops.error.param, 'stop_token_ids');
  assert.match(stops.error.message, /512, 1000/);
  // In-vocabulary ids still work.
  const ok = await fx().client.completions.create({
    model: MODEL,
    prompt: 'Once',
    max_tokens: 2,
    logit_bias: { '511': 1 },
    stop_token_ids: [511],
  } as OpenAI.CompletionCreateParamsNonStreaming);
  assert.equal(ok.choices.length, 1);
});

t.test('/tokenize: add_generation_prompt false and continue_final_message (vLLM), ChatML template', { skip }, async () => {
  const tokenize = async (body: unknown): Promise<{ status: number; json: { tokens: number[]; error?: { param: string } } }> => {
    const res = await fetch(`${fx().server.baseUrl}/tokenize`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    return { status: res.status, json: (await res.json()) as { tokens: number[]; error?: { param: string } } };
  };
  const messages = [
    { role: 'user', content: 'Tell me a story.' },
    { role: 'assistant', content: 'Once upon a time' },
  ];
  const open = await tokenize({ messages: messages.slice(0, 1) });
  const closed = await tokenize({ messages: messages.slice(0, 1), add_generation_prompt: false });
  assert.equal(open.status, 200);
  assert.equal(closed.status, 200);
  assert.ok(decode(open.json.tokens).endsWith('assistant\n'), decode(open.json.tokens));
  assert.ok(!decode(closed.json.tokens).endsWith('assistant\n'));
  const continued = await tokenize({ messages, continue_final_message: true });
  assert.equal(continued.status, 200);
  assert.ok(decode(continued.json.tokens).endsWith('Once upon a time'), decode(continued.json.tokens));
  const both = await tokenize({ messages, continue_final_message: true, add_generation_prompt: true });
  assert.equal(both.status, 400);
  assert.equal(both.json.error?.param, 'continue_final_message');
});
