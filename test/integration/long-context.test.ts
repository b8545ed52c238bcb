/**
 * The CAP trade-off at long context, through the HTTP API on the long-context model
 * the project trains (test/fixtures/models/longctx, trained context 8,192): at 4K
 * tokens full attention finds the pass key and SnapKV at 25% at least half the time, and with the needle
 * early in the context StreamingLLM at 25% (sinks + recent window) finds it less
 * often than SnapKV at 25%, whose observation window asks the question first.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import t from 'tap';
import { loadTokenizer } from '../../src/model/tokenizer.js';
import { buildItems, loadHaystacks, type EvalItem } from '../bench/ruler/items.js';
import { scoreCompletion } from '../bench/ruler/tasks.js';
import { missingShared, sharedPath } from '../helpers/shared.js';
import { startServer, type RunningServer } from './server-harness.js';

const MODEL = resolve('test/fixtures/models/longctx');
const skip = missingShared('data', 'text') ?? (existsSync(resolve(MODEL, 'model.safetensors')) ? null : `${MODEL} is missing; skipping`);

interface CompletionBody {
  readonly choices: readonly { readonly text: string }[];
  readonly cap?: { readonly policy?: string };
}

async function complete(s: RunningServer, e: EvalItem, policy: string): Promise<string> {
  const res = await fetch(`${s.baseUrl}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'longctx', prompt: e.item.prompt, max_tokens: e.maxTokens, temperature: 0, cap: { policy } }),
  });
  const body = (await res.json()) as CompletionBody;
  assert.equal(res.status, 200, JSON.stringify(body));
  assert.equal(body.cap?.policy, policy);
  return body.choices[0]?.text ?? '';
}

async function accuracy(s: RunningServer, items: readonly EvalItem[], policy: string): Promise<number> {
  const texts = await Promise.all(items.map((e) => complete(s, e, policy)));
  return texts.reduce((a, t, i) => a + scoreCompletion((items[i] as EvalItem).item, t), 0) / items.length;
}

t.test(
  'at 4K tokens: full attention finds the pass key and snapkv-25 at least half the time; with the needle early streaming-llm-25 finds it less often than snapkv-25',
  { skip: skip ?? false, timeout: 600_000 },
  async (t) => {
    const tok = loadTokenizer(MODEL);
    const haystacks = loadHaystacks(sharedPath('data', 'text'), tok);
    const s = await startServer(MODEL, ['server.maxConcurrent=4', 'model.servedModelName=longctx']);
    try {
      const spread = buildItems('passkey', 4096, 6, haystacks, tok, 1);
      const early = buildItems('passkey', 4096, 20, haystacks, tok, 1, { from: 0.05, to: 0.4 });
      const full = await accuracy(s, spread, 'full');
      const snapSpread = await accuracy(s, spread, 'snapkv-25');
      assert.ok(full >= 5 / 6, `full attention found ${full * 6} of 6 pass keys`);
      // On this 3-layer model SnapKV's observation window does not attend to every digit of the needle,
      // so some digits are evicted and the copy skips them (measured: 4 of 6). At least half, and the
      // trade-off below, are what the model supports; the full-size papers' models keep retrieval at 25%.
      assert.ok(snapSpread >= 3 / 6, `snapkv-25 found ${snapSpread * 6} of 6 pass keys`);
      const snap = await accuracy(s, early, 'snapkv-25');
      const streaming = await accuracy(s, early, 'streaming-llm-25');
      t.comment(
        `4K pass key: full ${full * 6}/6, snapkv-25 ${snapSpread * 6}/6; needle early (20 items): snapkv-25 ${snap * 20}/20, streaming-llm-25 ${streaming * 20}/20`,
      );
      assert.ok(streaming < snap, `needle early: streaming-llm-25 ${streaming}, snapkv-25 ${snap}`);
    } finally {
      await s.close();
    }
  },
);
