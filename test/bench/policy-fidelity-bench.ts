/**
 * Accuracy of every policy against the full cache, on the real stories260K
 * model and real TinyStories text, in its own process. Each passage: a prompt
 * of real text, then a continuation of real text teacher-forced through the
 * policy's decode path (eviction at prefill end and every compressEvery
 * steps, Quest's page selection, sink-window prefill) with every step's
 * distribution captured. Against the full cache on the same tokens: KL(full ||
 * policy), top-1 agreement, and the continuation's perplexity under each.
 * KV storage is measured the same way: KIVI (kivi-8/4/2, keys per channel,
 * values per token) and the fp16 KV cache (memory.kvDtype) against the fp32
 * cache; their `budget` is bytes per token over fp32's (KIVI's computed for
 * packed codes and scales, fp16's allocated).
 * Prints one JSON line.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { parsePolicyFile, type Policy } from '../../src/policies/registry.js';
import { instantiatePolicy } from '../../src/policies/methods.js';
import { openTestCore, type TestCore } from '../helpers/core.js';
import { compareRows } from './compare-rows.js';
import { missingShared, sharedPath, STORIES_DIR } from '../helpers/shared.js';
import { greedyRequest } from '../helpers/requests.js';

export interface FidelityPoint {
  readonly method: string;
  readonly budget: number;
  readonly kl: number;
  readonly top1: number;
  readonly perplexity: number;
  readonly fullPerplexity: number;
  readonly kvRetained: number;
}

export interface FidelityResult {
  readonly passages: number;
  readonly promptTokens: number;
  readonly continuationTokens: number;
  readonly points: FidelityPoint[];
  readonly skipped: string | null;
}

function policyFor(method: string, budget: number): Policy {
  const yaml = readFileSync(join('policies', `${method}.yaml`), 'utf8');
  const base = parsePolicyFile(yaml, `policies/${method}.yaml`);
  const params: Record<string, unknown> = { ...base.params };
  if (method === 'sink-window') {
    params['windowTokens'] = Math.max(1, Math.round(budget * 384));
  } else {
    params['budget'] = budget;
  }
  if ('topPages' in params) delete params['topPages'];
  const body = JSON.stringify({ name: `${method}-${Math.round(budget * 1000)}`, kind: base.kind, method, params });
  return parsePolicyFile(body, `<bench ${method} ${budget}>`);
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { passages: { type: 'string', default: '16' }, prompt: { type: 'string', default: '384' }, continuation: { type: 'string', default: '96' } },
  });
  const skipped = missingShared('models', 'stories260K') ?? missingShared('data', 'text', 'tinystories_niklas6.txt');
  if (skipped) {
    process.stdout.write(`${JSON.stringify({ passages: 0, promptTokens: 0, continuationTokens: 0, points: [], skipped })}\n`);
    return;
  }
  const passages = Number(values.passages);
  const P = Number(values.prompt);
  const C = Number(values.continuation);
  const c = await openTestCore(STORIES_DIR, { prefillChunk: 128 });
  const text = readFileSync(sharedPath('data', 'text', 'tinystories_niklas6.txt'), 'utf8');
  const ids = c.checkpoint.tokenizer.encode(text, { addSpecialTokens: true });
  const stride = Math.floor((ids.length - (P + C)) / passages);
  const run = async (
    id: string,
    prompt: number[],
    cont: number[],
    policy: Policy | undefined,
    core: TestCore = c,
  ): Promise<{ rows: Float32Array; kept: number }> => {
    const req = greedyRequest(id, prompt, cont.length, policy, { captureLogprobs: true, forcedTokens: cont });
    const done = (await core.generate(req)).at(-1);
    if (done?.type !== 'done' || !done.capturedLogprobs) throw new Error(`${id}: no captured logprobs`);
    return { rows: done.capturedLogprobs, kept: done.policy.compressionRatio };
  };
  const V = c.checkpoint.spec.vocabSize;
  const fullRuns: { rows: Float32Array; cont: number[]; prompt: number[] }[] = [];
  for (let i = 0; i < passages; i++) {
    const start = i * stride;
    const prompt = [1, ...ids.slice(start + 1, start + P)];
    const cont = ids.slice(start + P, start + P + C);
    fullRuns.push({ rows: (await run(`full-${i}`, prompt, cont, undefined)).rows, cont, prompt });
  }
  const methods = ['streaming-llm', 'h2o', 'snapkv', 'pyramidkv', 'tova', 'knorm', 'quest', 'sink-window'];
  const points: FidelityPoint[] = [];
  const measure = async (method: string, budget: number, policy: Policy | undefined, core: TestCore = c): Promise<void> => {
    let kl = 0;
    let agree = 0;
    let nll = 0;
    let fullNll = 0;
    let steps = 0;
    let kept = 0;
    for (const [i, f] of fullRuns.entries()) {
      const r = await run(`${method}-${budget}-${i}`, f.prompt, f.cont, policy, core);
      kept += r.kept / fullRuns.length;
      for (let s = 0; s < f.cont.length; s++) {
        const c = compareRows(f.rows, r.rows, s, V);
        kl += c.kl;
        if (c.fullTop === c.policyTop) agree += 1;
        // Row s is the distribution the forced token cont[s] was drawn from.
        const tok = f.cont[s] ?? 0;
        nll -= r.rows[s * V + tok] ?? 0;
        fullNll -= f.rows[s * V + tok] ?? 0;
        steps += 1;
      }
    }
    const scored = steps;
    const point = {
      method,
      budget,
      kl: kl / steps,
      top1: agree / steps,
      perplexity: Math.exp(nll / scored),
      fullPerplexity: Math.exp(fullNll / scored),
      kvRetained: kept,
    };
    points.push(point);
    process.stderr.write(
      `${method} @${budget}: KL ${point.kl.toFixed(4)}, top-1 ${point.top1.toFixed(3)}, ppl ${point.perplexity.toFixed(3)} (full ${point.fullPerplexity.toFixed(3)}), kept ${kept.toFixed(3)}\n`,
    );
  };
  for (const method of methods) for (const budget of [0.5, 0.25, 0.125]) await measure(method, budget, policyFor(method, budget));
  for (const bits of [8, 4, 2]) {
    const base = parsePolicyFile(readFileSync(join('policies', 'kivi.yaml'), 'utf8'), 'policies/kivi.yaml');
    const policy = parsePolicyFile(
      JSON.stringify({ name: `kivi-${bits}`, kind: base.kind, method: base.method, params: { ...base.params, bits } }),
      `<bench kivi ${bits}>`,
    );
    const ratio = Number(instantiatePolicy(policy, c.checkpoint.spec).report().details['packedRatioVsFp32']);
    await measure('kivi', Math.round(ratio * 1000) / 1000, policy);
  }
  const half = await openTestCore(STORIES_DIR, { prefillChunk: 128, kvDtype: 'fp16' });
  await measure('kv-fp16', 0.5, undefined, half);
  await half.close();
  await c.close();
  const result: FidelityResult = { passages, promptTokens: P, continuationTokens: C, points, skipped: null };
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`policy-fidelity-bench: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
