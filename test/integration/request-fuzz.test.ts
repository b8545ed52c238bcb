/**
 * A bounded, seeded fuzz of the request schemas against the real server on
 * stories260K: valid requests to every JSON route, mutated (fields dropped,
 * values swapped for other JSON types, out-of-range numbers, unknown keys, deep
 * nesting, odd strings). Asserts: never a 5xx, every error is OpenAI-shaped JSON,
 * no request hangs, and the server is healthy afterwards.
 */
import assert from 'node:assert/strict';
import t from 'tap';
import { Rng } from '../../src/model/create/prng.js';
import { startServer, storiesModelDir } from './server-harness.js';

const modelDir = storiesModelDir();
const skip = modelDir === null ? 'stories260K not found (set CAPSERVE_SHARED to the shared folder)' : false;
type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

const SEEDS: readonly { readonly url: string; readonly body: { [k: string]: Json } }[] = [
  {
    url: '/v1/completions',
    body: { model: 'stories260K', prompt: 'Once upon a time', max_tokens: 4, temperature: 0, logprobs: 2, stop: ['.'], n: 1, echo: false, seed: 1 },
  },
  { url: '/v1/completions', body: { model: 'stories260K', prompt: ['Once', [1, 2, 3]], max_tokens: 2, stream: true, logit_bias: { '5': 1 } } },
  {
    url: '/v1/chat/completions',
    body: { model: 'stories260K', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 4, top_p: 0.9, logprobs: true, top_logprobs: 2 },
  },
  {
    url: '/v1/chat/completions',
    body: {
      messages: [
        { role: 'system', content: 'Be brief' },
        { role: 'user', content: [{ type: 'text', text: 'Hi' }] },
      ],
      stream: true,
      stream_options: { include_usage: true },
      max_completion_tokens: 3,
    },
  },
  { url: '/v1/responses', body: { model: 'stories260K', input: 'Hello', max_output_tokens: 4, instructions: 'x' } },
  { url: '/tokenize', body: { model: 'stories260K', prompt: 'Once upon a time', add_special_tokens: true } },
  { url: '/detokenize', body: { model: 'stories260K', tokens: [1, 2, 3] } },
];

const ODD: readonly Json[] = [
  null,
  true,
  -1,
  0,
  1e308,
  -1e308,
  2 ** 53 + 1,
  0.5,
  '',
  'x'.repeat(3000),
  '\u0000\ud800',
  [],
  {},
  [[[[[[]]]]]],
  { cap: { policy: 'nope' } },
  'stories260K',
  [-5, 1e9],
  { '999999': 100 },
];

function pick<T>(rng: Rng, xs: readonly T[]): T {
  return xs[rng.nextU32() % xs.length] as T;
}

function mutate(rng: Rng, v: Json, depth: number): Json {
  const r = rng.nextU32() % 10;
  if (r === 0 || depth > 3) return pick(rng, ODD);
  if (Array.isArray(v)) {
    const out = v.map((x) => (rng.nextU32() % 3 === 0 ? mutate(rng, x, depth + 1) : x));
    if (rng.nextU32() % 4 === 0) out.push(pick(rng, ODD));
    return out;
  }
  if (v !== null && typeof v === 'object') {
    const out: { [k: string]: Json } = {};
    for (const [k, x] of Object.entries(v)) {
      const d = rng.nextU32() % 6;
      if (d === 0) continue;
      out[k] = d === 1 ? mutate(rng, x, depth + 1) : x;
    }
    if (rng.nextU32() % 5 === 0)
      out[pick(rng, ['max_tokens', 'n', 'temperature', 'top_k', 'stop', 'logprobs', 'cap', 'unknown_field', 'tools'])] = pick(rng, ODD);
    return out;
  }
  return r < 5 ? pick(rng, ODD) : v;
}

t.test('fuzzed request bodies: never a 5xx or a hang, errors are OpenAI-shaped, the server stays healthy', { skip, timeout: 240_000 }, async () => {
  if (modelDir === null) return;
  const s = await startServer(modelDir, ['server.maxQueue=256']);
  try {
    const rng = new Rng(20261202, 7);
    const deadline = Date.now() + 60_000;
    let sent = 0;
    const statuses = new Map<number, number>();
    while (sent < 400 && Date.now() < deadline) {
      const batch = Array.from({ length: 8 }, () => {
        const seed = pick(rng, SEEDS);
        return { url: seed.url, body: mutate(rng, seed.body, 0) };
      });
      await Promise.all(
        batch.map(async ({ url, body }) => {
          const res = await fetch(`${s.baseUrl}${url}`, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify(body),
            signal: AbortSignal.timeout(30_000),
          });
          const text = await res.text();
          statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
          assert.ok(res.status < 500, `${url} ${JSON.stringify(body).slice(0, 300)} -> ${res.status} ${text.slice(0, 300)}`);
          if (res.status >= 400) {
            const err = (JSON.parse(text) as { error?: { message?: unknown; type?: unknown } }).error;
            assert.ok(typeof err?.message === 'string' && typeof err.type === 'string', `${url} -> ${res.status} not OpenAI-shaped: ${text.slice(0, 200)}`);
          }
        }),
      );
      sent += batch.length;
    }
    assert.ok(sent >= 80, `only ${sent} requests in the time bound`);
    process.stderr.write(`fuzz: ${sent} requests, statuses ${JSON.stringify([...statuses].sort((a, b) => a[0] - b[0]))}\n`);
    assert.ok((statuses.get(200) ?? 0) > 0 && [...statuses.keys()].some((k) => k >= 400), `a mix of successes and errors: ${JSON.stringify([...statuses])}`);
    const health = await fetch(`${s.baseUrl}/health`);
    assert.equal(health.status, 200);
  } finally {
    await s.close();
  }
});
