/**
 * Through the HTTP API: a generated Gemma 3 (sliding and full layers, prompts
 * longer than its window) and a generated Qwen3-MoE served by the real engine
 * and server; a request naming snapkv-25 or quest is served by it and the
 * response's cap object says what the policy did.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import t from 'tap';
import { createModel } from '../../src/model/create/create-model.js';
import type { Architecture } from '../../src/model/spec.js';
import { tempDir } from '../helpers/session.js';
import { startServer } from './server-harness.js';

interface Cap {
  readonly policy: string;
  readonly kind: string;
  readonly compression_ratio: number;
  readonly context_tokens: number;
  readonly kv_tokens_retained: number;
}

const PROMPT =
  'Once upon a time there was a little dog who lived in a small house by the park. Every morning the dog ran to the park and played with the other dogs until the sun went down.';

for (const arch of ['gemma3_text', 'qwen3_moe'] as Architecture[]) {
  t.test(`${arch} over HTTP: snapkv-25 and quest serve it and report what they did`, async (t) => {
    const dir = join(tempDir(`http-${arch}`), 'model');
    await createModel({ arch, preset: 'tiny', seed: 7, out: dir });
    const server = await startServer(dir, [], { cacheDir: join(dir, '..', 'cache') });
    try {
      const post = async (policy: string): Promise<{ status: number; json: Record<string, unknown> }> => {
        const res = await fetch(`${server.baseUrl}/v1/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ prompt: PROMPT, max_tokens: 8, temperature: 0, ignore_eos: true, cap: { policy } }),
        });
        return { status: res.status, json: (await res.json()) as Record<string, unknown> };
      };
      for (const policy of ['full', 'snapkv-25', 'quest']) {
        const res = await post(policy);
        assert.equal(res.status, 200, `${policy}: ${JSON.stringify(res.json)}`);
        const cap = res.json['cap'] as Cap;
        const usage = res.json['usage'] as { prompt_tokens: number; completion_tokens: number };
        assert.equal(cap.policy, policy);
        assert.equal(usage.completion_tokens, 8);
        t.comment(
          `${arch} ${policy}: prompt ${usage.prompt_tokens} tokens, kept ${cap.kv_tokens_retained} of ${cap.context_tokens} (ratio ${cap.compression_ratio.toFixed(3)})`,
        );
        if (policy === 'snapkv-25') assert.ok(cap.compression_ratio < 0.75, `snapkv-25 kept ${cap.compression_ratio}`);
        if (arch === 'gemma3_text') assert.ok(usage.prompt_tokens > 16, 'the prompt is longer than the tiny Gemma 3 sliding window');
      }
    } finally {
      await server.close();
    }
  });
}
