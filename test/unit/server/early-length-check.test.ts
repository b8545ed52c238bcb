/**
 * A prompt whose byte length alone proves it cannot fit is refused before it is
 * tokenized, with the same 400 the tokenized check gives; whenever the outcome
 * could depend on the exact count (another overflow mode, a length-matching
 * rule, an evicting policy, a tokenizer with no bound) it is tokenized as before.
 */
import t from 'tap';
import assert from 'node:assert/strict';
import { makeApp } from './helpers.js';

// The scripted engine: one token per code point (+ BOS), window 256; declared bound 4 bytes per token.
const LONG = 'x'.repeat(4 * 256 + 8); // at least 258 tokens by bytes alone

function counting(engine: { tokenize: (text: string, options?: { addSpecialTokens?: boolean }) => Promise<number[]> }): () => number {
  let calls = 0;
  const inner = engine.tokenize.bind(engine);
  engine.tokenize = (text, options) => {
    calls++;
    return inner(text, options);
  };
  return () => calls;
}

t.test('provably too long: 400 context_length_exceeded before any tokenization (completions, chat)', async (t) => {
  const { app, engine } = makeApp(t, { maxBytesPerToken: 4 });
  const calls = counting(engine);
  const res = await app.inject({ method: 'POST', url: '/v1/completions', payload: { prompt: LONG, max_tokens: 4 } });
  assert.equal(res.statusCode, 400);
  assert.equal(res.json().error.code, 'context_length_exceeded');
  assert.equal(res.json().error.param, 'prompt');
  assert.match(
    res.json().error.message,
    /maximum context length is 256 tokens\. However, you requested at least 262 tokens \(at least 258 in the input: 1032 bytes of text/,
  );
  const chat = await app.inject({ method: 'POST', url: '/v1/chat/completions', payload: { messages: [{ role: 'user', content: LONG }] } });
  assert.equal(chat.statusCode, 400);
  assert.equal(chat.json().error.code, 'context_length_exceeded');
  assert.equal(chat.json().error.param, 'messages');
  assert.equal(calls(), 0, 'nothing was tokenized');
});

t.test('not provable, so tokenized as before: a fitting prompt, no bound, another overflow mode, a length rule, an evicting policy', async (t) => {
  const cases: { sets: string[]; bound: boolean; payload: Record<string, unknown>; status: number }[] = [
    // Fits by bytes: served.
    { sets: [], bound: true, payload: { prompt: 'x'.repeat(100), max_tokens: 4 }, status: 200 },
    // No bound: the tokenized check answers (same code).
    { sets: [], bound: false, payload: { prompt: LONG, max_tokens: 4 }, status: 400 },
    // The request's own overflow mode could make it fit.
    { sets: [], bound: true, payload: { prompt: LONG, max_tokens: 4, cap: { overflow: 'truncate' } }, status: 200 },
    // A rule on prompt length could route it elsewhere.
    { sets: ['routing.rules=[{match: {minPromptTokens: 100000}, policy: full}]'], bound: true, payload: { prompt: LONG, max_tokens: 4 }, status: 400 },
    // An evicting policy: left to the tokenized check (which, under mode error, still refuses).
    { sets: [], bound: true, payload: { prompt: LONG, max_tokens: 4, cap: { policy: 'h2o' } }, status: 400 },
  ];
  for (const c of cases) {
    const { app, engine } = makeApp(t, c.bound ? { maxBytesPerToken: 4 } : {}, c.sets);
    const calls = counting(engine);
    const res = await app.inject({ method: 'POST', url: '/v1/completions', payload: c.payload });
    assert.equal(res.statusCode, c.status, `${JSON.stringify(c)}: ${res.body.slice(0, 200)}`);
    assert.ok(calls() > 0, `tokenized: ${JSON.stringify(c)}`);
  }
});
