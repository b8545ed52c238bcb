/**
 * KIVI through the real server on stories260K with a float16 KV cache
 * (memory.kvDtype fp16): a request naming kivi-8 gets a valid completion, and
 * the response's cap object says which policy served it and what it quantized;
 * GET /v1/policies lists the kv-quantization policies.
 */
import assert from 'node:assert/strict';
import t from 'tap';
import { goldenPrompts, startServer, storiesModelDir, type RunningServer } from './server-harness.js';

const modelDir = storiesModelDir();
const skip = modelDir === null ? 'stories260K not found (set CAPSERVE_SHARED to the shared folder)' : false;
let server: RunningServer | null = null;
let passage: number[] = [];

t.before(async () => {
  if (modelDir === null) return;
  passage = goldenPrompts(modelDir).find((p) => p.name === 'tinystories_passage_300')?.input_ids ?? [];
  server = await startServer(modelDir, ['memory.kvDtype=fp16', 'routing.allowRequestOverride=[full, kivi-8, kivi]']);
});
t.teardown(async () => {
  await server?.close();
});

interface Completion {
  choices: { text: string; finish_reason: string }[];
  usage: { completion_tokens: number };
  cap: { policy: string; kind: string; kv_quantization?: Record<string, number>; prefix_cache?: { status: string } };
}

t.test('a request naming kivi-8 on an fp16 KV cache: a valid completion, reported as kv-quantization', { skip }, async () => {
  if (server === null) throw new Error('server not started');
  const res = await fetch(`${server.baseUrl}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'stories260K', temperature: 0, prompt: passage, max_tokens: 16, cap: { policy: 'kivi-8' } }),
  });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('x-capserve-policy'), 'kivi-8');
  const body = (await res.json()) as Completion;
  assert.equal(body.usage.completion_tokens, 16);
  assert.ok((body.choices[0]?.text.length ?? 0) > 0);
  assert.equal(body.cap.policy, 'kivi-8');
  assert.equal(body.cap.kind, 'kv-quantization');
  const q = body.cap.kv_quantization;
  assert.ok(q !== undefined);
  assert.equal(q['bits'], 8);
  assert.equal(q['group_size'], 32);
  // 300 prompt tokens + 15 appended, residual 128: whole key groups of 32 up to 315 - 128, every value before the residual.
  const layers = 5;
  assert.equal(q['quantized_key_entries'], Math.floor((passage.length + 15 - 128) / 32) * 32 * layers);
  assert.equal(q['quantized_value_entries'], (passage.length + 15 - 128) * layers);
  // head_dim 8: 8 bits x 8 channels x (K, V) + fp16 scale and zero per key channel per 32 tokens + per value token, over 2 x 8 x 4 fp32 bytes.
  assert.equal(q['packed_ratio_vs_fp32'], (2 * 8 + (2 * 2 * 8) / 32 + 2 * 2) / (2 * 8 * 4));
  assert.equal(body.cap.prefix_cache?.status, 'bypassed');

  const listed = (await (await fetch(`${server.baseUrl}/v1/policies`)).json()) as { data: { name: string; kind: string }[] };
  for (const name of ['kivi-8', 'kivi']) assert.equal(listed.data.find((p) => p.name === name)?.kind, 'kv-quantization', name);
});
