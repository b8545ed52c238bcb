/**
 * Context compression and every overflow mode end to end through the HTTP
 * API: the real server and engine on stories260K (a 512-token window) with
 * the shipped policy files, TinyStories text as prompts.
 */
import t from 'tap';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { missingShared, sharedPath } from '../helpers/shared.js';
import { startServer, storiesModelDir, type RunningServer } from './server-harness.js';

const modelDir = storiesModelDir();
const skip =
  modelDir === null ? 'stories260K not found (set CAPSERVE_SHARED to the shared folder)' : (missingShared('data', 'text', 'tinystories_niklas6.txt') ?? false);
let server: RunningServer;
let stories = '';

t.before(async () => {
  if (skip !== false || modelDir === null) return;
  stories = readFileSync(sharedPath('data', 'text', 'tinystories_niklas6.txt'), 'utf8');
  server = await startServer(modelDir, ['shadow.sampleRate=1']);
});
t.teardown(async () => {
  await server?.close();
});

/** The first paragraphs of TinyStories holding at least `tokens` tokens (with BOS). */
async function passage(tokens: number): Promise<string> {
  let end = 0;
  while ((await server.engine.tokenize(stories.slice(0, end))).length < tokens) end = stories.indexOf('\n', end + 1) + 1;
  return stories.slice(0, end).trim();
}

interface Cap {
  policy: string;
  kind: string;
  prompt_tokens: number;
  kv_tokens_retained: number;
  original_tokens: number | null;
  compressed_tokens: number | null;
  compress_ms: number | null;
  overflow: {
    mode: string;
    applied: boolean;
    tokens_before: number;
    tokens_after: number;
    dropped: number;
    context_window: number;
    max_tokens: number;
    [k: string]: unknown;
  };
  dropped?: { text: string; tokens: number[] }[];
}
interface Completion {
  choices: { text?: string; message?: { content: string }; finish_reason: string }[];
  usage: { prompt_tokens: number; completion_tokens: number };
  cap: Cap;
}

async function post(
  path: string,
  body: Record<string, unknown>,
): Promise<{ status: number; body: Completion & { error?: { code: string; param: string; message: string } } }> {
  const res = await fetch(`${server.baseUrl}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ temperature: 0, ...body }),
  });
  return { status: res.status, body: (await res.json()) as Completion & { error?: { code: string; param: string; message: string } } };
}

async function metricsText(): Promise<string> {
  return (await fetch(`${server.baseUrl}/metrics`)).text();
}

function sample(text: string, series: string): number | null {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? null : Number(line.slice(series.length + 1));
}

t.test('error (the default): 400 context_length_exceeded stating the window and both numbers', { skip }, async () => {
  const long = await passage(600);
  const n = (await server.engine.tokenize(long)).length;
  const res = await post('/v1/completions', { prompt: long, max_tokens: 8 });
  assert.equal(res.status, 400);
  assert.equal(res.body.error?.code, 'context_length_exceeded');
  assert.equal(res.body.error?.param, 'prompt');
  assert.equal(
    res.body.error?.message,
    `This model's maximum context length is 512 tokens. However, you requested ${n + 8} tokens (${n} in the input, 8 in the completion). Please reduce the length of the input or of the completion.`,
  );
  const mid = await passage(400);
  const m = (await server.engine.tokenize(mid)).length;
  const budget = await post('/v1/completions', { prompt: mid, max_tokens: 600 - m });
  assert.equal(budget.status, 400);
  assert.equal(budget.body.error?.param, 'max_tokens');
  assert.match(
    budget.body.error?.message ?? '',
    new RegExp(`maximum context length is 512 tokens\\. However, you requested 600 tokens \\(${m} in the input, ${600 - m} in the completion\\)`),
  );
});

t.test('truncate: left on a completion, middle on a chat whose system message and question survive', { skip }, async () => {
  const long = await passage(700);
  const n = (await server.engine.tokenize(long)).length;
  const left = await post('/v1/completions', { prompt: long, max_tokens: 8, cap: { overflow: 'truncate', return_dropped: true } });
  assert.equal(left.status, 200, JSON.stringify(left.body));
  assert.equal(left.body.usage.prompt_tokens, 504);
  assert.equal(left.body.usage.completion_tokens, 8);
  const o = left.body.cap.overflow;
  assert.deepEqual(
    [o.mode, o.applied, o.side, o.tokens_before, o.tokens_after, o.dropped, o.context_window, o.max_tokens],
    ['truncate', true, 'left', n, 504, n - 504, 512, 8],
  );
  const dropped = left.body.cap.dropped?.[0];
  assert.equal(dropped?.tokens.length, n - 504);
  assert.ok(long.startsWith((dropped?.text ?? '').trim().slice(0, 200)), 'left truncation drops the oldest text');

  const system = 'You are a kind storyteller for small children.';
  const question = 'What did Lily find in her room?';
  const messages = [
    { role: 'system', content: system },
    { role: 'user', content: await passage(500) },
    { role: 'assistant', content: 'I like that story.' },
    { role: 'user', content: question },
  ];
  const middle = await post('/v1/chat/completions', {
    messages,
    max_tokens: 16,
    cap: { overflow: { mode: 'truncate', side: 'middle' }, return_dropped: true },
  });
  assert.equal(middle.status, 200, JSON.stringify(middle.body));
  assert.equal(middle.body.usage.prompt_tokens, 512 - 16);
  const cut = middle.body.cap.dropped?.[0]?.text ?? '';
  assert.ok(cut.length > 100);
  assert.ok(!cut.includes('storyteller') && !cut.includes(question), 'the system message and the question are not dropped');
  assert.equal(middle.body.cap.overflow.side, 'middle');
});

t.test('shift: keeps BOS (n_keep), drops the oldest in blocks of half the room; without max_tokens the completion gets what was freed', { skip }, async () => {
  const long = await passage(700);
  const n = (await server.engine.tokenize(long)).length;
  const res = await post('/v1/completions', { prompt: long, cap: { overflow: 'shift' } });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  const o = res.body.cap.overflow;
  // max_tokens absent and no room: 16 reserved, budget 496, blocks of (496 - 1) / 2 = 247.
  const blocks = Math.ceil((n - 496) / 247);
  assert.deepEqual([o.mode, o.keep, o.block, o.blocks, o.tokens_after], ['shift', 1, 247, blocks, n - blocks * 247]);
  assert.equal(o.max_tokens, 512 - o.tokens_after);
  assert.equal(res.body.usage.prompt_tokens, o.tokens_after);
  assert.ok(res.body.usage.completion_tokens > 0);
});

t.test('compress: the engine compresses with selective-context down to window - max_tokens; the report and the metrics say what it did', { skip }, async () => {
  const long = await passage(700);
  const n = (await server.engine.tokenize(long)).length;
  const before = await metricsText();
  const res = await post('/v1/completions', {
    prompt: long,
    max_tokens: 8,
    cap: { overflow: { mode: 'compress', policy: 'selective-context' }, return_dropped: true },
  });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  const cap = res.body.cap;
  assert.equal(cap.policy, 'selective-context');
  assert.equal(cap.kind, 'context-compression');
  assert.equal(cap.original_tokens, n);
  assert.ok(cap.compressed_tokens !== null && cap.compressed_tokens <= 504 && cap.compressed_tokens > 350, String(cap.compressed_tokens));
  assert.ok(cap.compress_ms !== null && cap.compress_ms > 0);
  const o = cap.overflow;
  assert.deepEqual(
    [o.mode, o.applied, o.tokens_before, o.tokens_after, o.dropped, o.target_tokens, o.policy],
    ['compress', true, n, cap.compressed_tokens, n - (cap.compressed_tokens ?? 0), 504, 'selective-context'],
  );
  assert.equal(
    cap.dropped?.reduce((s, d) => s + d.tokens.length, 0),
    n - (cap.compressed_tokens ?? 0),
  );
  assert.equal(res.body.usage.completion_tokens, 8);
  const after = await metricsText();
  const delta = (series: string): number => (sample(after, series) ?? 0) - (sample(before, series) ?? 0);
  assert.equal(delta('capserve_prompt_tokens_dropped_total{policy="selective-context",reason="compression"}'), n - (cap.compressed_tokens ?? 0));
  assert.equal(delta('capserve_compression_seconds_count{policy="selective-context"}'), 1);
  assert.equal(delta('capserve_overflow_requests_total{policy="selective-context",mode="compress"}'), 1);
});

t.test('evict: the whole prompt is served by streaming-llm, whose cache stays within its budget', { skip }, async () => {
  const long = await passage(700);
  const n = (await server.engine.tokenize(long)).length;
  const res = await post('/v1/completions', { prompt: long, max_tokens: 8, cap: { overflow: { mode: 'evict', policy: 'streaming-llm' } } });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  const cap = res.body.cap;
  assert.equal(cap.policy, 'streaming-llm');
  assert.equal(cap.kind, 'kv-eviction');
  assert.equal(cap.prompt_tokens, n);
  assert.ok(cap.kv_tokens_retained < 512, `retained ${cap.kv_tokens_retained}`);
  const o = cap.overflow;
  assert.deepEqual([o.mode, o.applied, o.tokens_after, o.dropped, o.policy, o.kv_token_limit], ['evict', true, n, 0, 'streaming-llm', 512]);
  assert.equal(res.body.usage.completion_tokens, 8);
});

t.test(
  'compression through the API: a chat routed to selective-context compresses the context turns only; shadow fidelity compares against the uncompressed prompt',
  { skip },
  async () => {
    await server.app.capserve.shadow.idle();
    const before = await metricsText();
    const system = 'You are a kind storyteller for small children.';
    const question = 'What did Lily find in her room?';
    const context = await passage(260);
    const messages = [
      { role: 'system', content: system },
      { role: 'user', content: context },
      { role: 'assistant', content: 'That is a nice story about sharing.' },
      { role: 'user', content: question },
    ];
    const res = await post('/v1/chat/completions', { messages, max_tokens: 12, cap: { policy: 'selective-context', return_dropped: true } });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    const cap = res.body.cap;
    assert.equal(cap.kind, 'context-compression');
    assert.equal(cap.original_tokens, res.body.usage.prompt_tokens);
    assert.ok(
      cap.compressed_tokens !== null && cap.original_tokens !== null && cap.compressed_tokens < cap.original_tokens * 0.8,
      `${cap.compressed_tokens} of ${cap.original_tokens}`,
    );
    assert.equal(cap.overflow.applied, false);
    const dropped = cap.dropped ?? [];
    assert.ok(dropped.length > 0);
    for (const d of dropped) {
      assert.ok(!d.text.includes('storyteller') && !d.text.includes('What did Lily'), `protected text dropped: ${d.text}`);
      assert.ok(!d.text.includes('im_start') && !d.text.includes('im_end'), `template dropped: ${d.text}`);
    }
    let text = '';
    const deadline = Date.now() + 10_000;
    const scored = 'capserve_shadow_requests_total{policy="selective-context",outcome="scored"}';
    while (Date.now() < deadline) {
      text = await metricsText();
      if ((sample(text, scored) ?? 0) > (sample(before, scored) ?? 0)) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok((sample(text, scored) ?? 0) > (sample(before, scored) ?? 0), 'the compressed request was re-scored');
    const kl = sample(text, 'capserve_shadow_kl_divergence_sum{policy="selective-context"}') ?? NaN;
    assert.ok(Number.isFinite(kl) && kl > 0, `dropping half the context changes the next-token distributions (KL sum ${kl})`);
  },
);
