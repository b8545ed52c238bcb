import t from 'tap';
import assert from 'node:assert/strict';
import { Agent, request } from 'node:http';
import { loadTokenizer } from '../../src/model/tokenizer.js';
import { startServer, storiesModelDir, type RunningServer } from './server-harness.js';

const modelDir = storiesModelDir();
const skip = modelDir === null ? 'stories260K not found (set CAPSERVE_SHARED to the shared folder)' : false;
let server: RunningServer;

t.before(async () => {
  // Stretch the context so a 2,048-token prompt fits (RoPE extends past the trained 512 positions).
  if (modelDir !== null) server = await startServer(modelDir, ['model.contextLength=4096']);
});
t.teardown(async () => {
  await server?.close();
});

function healthOnce(agent: Agent): Promise<number> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: server.port, path: '/health', agent }, (res) => {
      res.resume();
      res.on('end', () => (res.statusCode === 200 ? resolve(performance.now() - started) : reject(new Error(`status ${res.statusCode}`))));
    });
    req.on('error', reject);
    req.end();
  });
}

t.test('GET /health p99 stays under 50 ms while 2,048-token prefills run', { skip }, async (t) => {
  // Token ids, not text, so the prompt is exactly 2,048 tokens.
  const prompt = Array.from({ length: 2048 }, (_, i) => 3 + ((i * 7919) % 509));
  let prefillsDone = 0;
  let running = true;
  let inFlight = false;
  const prefills = (async () => {
    while (running) {
      inFlight = true;
      const res = await fetch(`${server.baseUrl}/v1/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'stories260K', prompt, max_tokens: 1 }),
      });
      const body = (await res.json()) as { usage?: { prompt_tokens: number } };
      assert.equal(res.status, 200, JSON.stringify(body));
      assert.equal(body.usage?.prompt_tokens, 2048);
      prefillsDone++;
    }
    inFlight = false;
  })();

  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const latencies: number[] = [];
  // Probe until enough samples were taken while a prefill was in flight, and at least two prefills completed.
  const deadline = Date.now() + 20_000;
  while ((latencies.length < 300 || prefillsDone < 2) && Date.now() < deadline) {
    const wasBusy = inFlight;
    const ms = await healthOnce(agent);
    if (wasBusy) latencies.push(ms);
  }
  running = false;
  await prefills;
  agent.destroy();

  assert.ok(prefillsDone >= 2, `prefills completed during probing: ${prefillsDone}`);
  assert.ok(latencies.length >= 100, `samples taken during prefill: ${latencies.length}`);
  const { p50, p99 } = percentiles(latencies);
  t.comment(
    `/health during prefill: p50 ${p50.toFixed(2)} ms, p99 ${p99.toFixed(2)} ms, n=${latencies.length}, 2,048-token prefills completed: ${prefillsDone}`,
  );
  assert.ok(p99 < 50, `/health p99 ${p99.toFixed(1)} ms (p50 ${p50.toFixed(1)} ms, n=${latencies.length}, prefills ${prefillsDone})`);
});

/** Runs `count` copies of `job` while probing /health back to back; the latencies of the probes taken while a job was in flight. */
async function healthWhile<T>(count: number, job: () => Promise<T>): Promise<{ readonly results: T[]; readonly latencies: number[] }> {
  let inFlight = 0;
  const all = Promise.all(
    Array.from({ length: count }, async () => {
      inFlight++;
      try {
        return await job();
      } finally {
        inFlight--;
      }
    }),
  );
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const latencies: number[] = [];
  await new Promise((r) => setTimeout(r, 20));
  while (inFlight > 0) {
    const ms = await healthOnce(agent);
    if (inFlight > 0) latencies.push(ms);
  }
  const results = await all;
  agent.destroy();
  return { results, latencies };
}

/** p50 and p99 of latencies (sorted in place). */
function percentiles(latencies: number[]): { readonly p50: number; readonly p99: number } {
  latencies.sort((a, b) => a - b);
  return {
    p50: latencies[Math.floor(latencies.length / 2)] ?? Infinity,
    p99: latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * 0.99))] ?? Infinity,
  };
}

t.test('GET /health p99 stays under 50 ms while 3 large /tokenize requests run (tokenization is off the HTTP thread)', { skip }, async (t) => {
  // ~130 KB of story-like text each: seconds of tokenizer work that used to hold the event loop.
  const text = 'Once upon a time, a little girl named Lily found a shiny red ball in the park. '.repeat(1650);
  const started = performance.now();
  const { results: counts, latencies } = await healthWhile(3, async () => {
    const res = await fetch(`${server.baseUrl}/tokenize`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'stories260K', prompt: text }),
    });
    const body = (await res.json()) as { count?: number; tokens?: number[] };
    assert.equal(res.status, 200, JSON.stringify(body).slice(0, 200));
    assert.ok((body.count ?? 0) > text.length / 8, `count ${body.count}`);
    assert.equal(body.tokens?.length, body.count);
    return body.count ?? 0;
  });
  // The same text always gives the same ids, inline or on a pool thread.
  assert.equal(new Set(counts).size, 1);
  assert.ok(latencies.length >= 20, `samples taken while tokenizing: ${latencies.length}`);
  const { p50, p99 } = percentiles(latencies);
  t.comment(
    `/health while 3 x ${text.length} chars tokenize: p50 ${p50.toFixed(2)} ms, p99 ${p99.toFixed(2)} ms, n=${latencies.length}, ${counts[0]} tokens each, ${(performance.now() - started).toFixed(0)} ms total`,
  );
  assert.ok(p99 < 50, `/health p99 ${p99.toFixed(1)} ms (p50 ${p50.toFixed(1)} ms, n=${latencies.length})`);
});

t.test('GET /health p99 stays under 50 ms while 3 large /detokenize requests run (decoding is off the HTTP thread)', { skip }, async (t) => {
  // 100,000 ids each (380 KB of JSON): most of a second of decoding that used to hold the event loop,
  // in a body small enough that parsing it (on the HTTP thread, as every body) stays short.
  const ids = Array.from({ length: 100_000 }, (_, i) => 3 + ((i * 7919) % 509));
  const payload = JSON.stringify({ model: 'stories260K', tokens: ids });
  const started = performance.now();
  const { results: texts, latencies } = await healthWhile(3, async () => {
    const res = await fetch(`${server.baseUrl}/detokenize`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: payload });
    const body = (await res.json()) as { prompt?: string };
    assert.equal(res.status, 200, JSON.stringify(body).slice(0, 200));
    return body.prompt ?? '';
  });
  // Off the thread or inline, the same ids decode to the same text.
  assert.equal(new Set(texts).size, 1);
  const expected = loadTokenizer(modelDir as string).decode(ids, { skipSpecialTokens: true });
  assert.equal(texts[0], expected);
  assert.ok(latencies.length >= 20, `samples taken while decoding: ${latencies.length}`);
  const { p50, p99 } = percentiles(latencies);
  t.comment(
    `/health while 3 x ${ids.length} ids detokenize: p50 ${p50.toFixed(2)} ms, p99 ${p99.toFixed(2)} ms, n=${latencies.length}, ${expected.length} chars each, ${(performance.now() - started).toFixed(0)} ms total`,
  );
  assert.ok(p99 < 50, `/health p99 ${p99.toFixed(1)} ms (p50 ${p50.toFixed(1)} ms, n=${latencies.length})`);
});
