/**
 * Context-compression benchmark, one JSON line on stdout:
 * - time: milliseconds per 1K prompt tokens for each method (p50/p90 over
 *   runs, cold scorer cache), next to one plain scoring pass over the same prompt;
 * - fidelity: next-sentence NLL on TinyStories passages against rate
 *   (0.9, 0.7, 0.5, 0.3) for each method, with the whole context and with as
 *   many tokens dropped at random (see test/integration/compression-passages.ts).
 *
 *   node dist/test/bench/compression-bench.js [--model DIR] [--text FILE] [--passages N] [--runs N] [--threads N]
 */
import { existsSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { loadCheckpoint } from '../../src/model/checkpoint.js';
import { COMPRESSION_METHODS } from '../../src/policies/compression/index.js';
import { ModelScorer } from '../../src/engine/model-scorer.js';
import { segmentPrompt } from '../../src/policies/compression/segments.js';
import type { CompressionInput } from '../../src/policies/compression/types.js';
import { sharedPath } from '../helpers/shared.js';
import { loadPassages, measureFidelity, type FidelityResult } from '../integration/compression-passages.js';
import { params } from '../unit/policies/compression/params.js';
import { machineInfo } from './machine.js';
import { distribution } from './stats.js';

const RATES = [0.9, 0.7, 0.5, 0.3];

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      model: { type: 'string', default: sharedPath('models', 'stories260K') },
      text: { type: 'string', default: sharedPath('data', 'text', 'tinystories_niklas6.txt') },
      passages: { type: 'string', default: '100' },
      runs: { type: 'string', default: '5' },
      threads: { type: 'string', default: '1' },
      'prompt-tokens': { type: 'string', default: '2000' },
      seed: { type: 'string', default: '20240611' },
    },
  });
  for (const p of [values.model, values.text])
    if (!existsSync(p)) throw new Error(`compression-bench: ${p} does not exist (set CAPSERVE_SHARED or pass --model/--text)`);
  const bos = loadCheckpoint(values.model).spec.bosTokenId ?? 1;
  const scorer = await ModelScorer.open(values.model, { cacheDir: join(tmpdir(), 'capserve-bench-cache'), threads: Number(values.threads) });
  const tokenizer = scorer.tokenizer;
  if (tokenizer === null) throw new Error('unreachable: an opened scorer has a tokenizer');
  const seed = Number(values.seed);

  // Timing prompt: consecutive TinyStories paragraphs as the context, a question after them.
  const passages = loadPassages(values.text, tokenizer, Number(values.passages), seed);
  const paragraphs = readFileSync(values.text, 'utf8').split(/\n\s*\n/);
  let context = '';
  while (tokenizer.encode(context, { addSpecialTokens: false }).length < Number(values['prompt-tokens']) && paragraphs.length > 0)
    context += `${paragraphs.shift() ?? ''}\n\n`;
  const input: CompressionInput = {
    segments: [
      { role: 'other', tokens: [bos] },
      ...segmentPrompt(
        [
          { role: 'context', text: context },
          { role: 'question', text: 'Who found the needle in her room?' },
        ],
        tokenizer,
      ),
    ],
  };
  const promptTokens = input.segments.reduce((a, s) => a + s.tokens.length, 0);
  const runs = Number(values.runs);
  const per1k = (ms: number): number => (ms * 1000) / promptTokens;

  const plain: number[] = [];
  for (let r = 0; r < runs; r++) {
    scorer.clearCache();
    const t0 = performance.now();
    await scorer.logprobs(input.segments.flatMap((s) => s.tokens));
    plain.push(per1k(performance.now() - t0));
  }
  const time: Record<string, unknown> = { scoringPass: distribution(plain) };
  for (const method of COMPRESSION_METHODS) {
    const ms: number[] = [];
    let forward = 0;
    let kept = 0;
    for (let r = 0; r < runs; r++) {
      scorer.clearCache();
      const before = scorer.stats.forwardTokens;
      const t0 = performance.now();
      const res = await method.compress(input, scorer, tokenizer, params(method.schema, { rate: 0.5 }));
      ms.push(per1k(performance.now() - t0));
      forward = scorer.stats.forwardTokens - before;
      kept = res.compressedTokens;
    }
    time[method.method] = { msPer1k: distribution(ms), scorerTokensPer1k: Math.round((forward * 1000) / promptTokens), keptTokens: kept };
  }

  const fidelity: Record<string, FidelityResult[]> = {};
  for (const method of COMPRESSION_METHODS) {
    fidelity[method.method] = [];
    for (const rate of RATES) {
      fidelity[method.method]?.push(await measureFidelity(method, params(method.schema, { rate }), passages, scorer, tokenizer, bos, seed + 1));
    }
  }
  await scorer.close();
  const out = {
    bench: 'compression',
    date: new Date().toISOString(),
    machine: machineInfo(),
    note: 'shared machine: other jobs were running; timings are indicative',
    model: values.model,
    threads: Number(values.threads),
    time: { promptTokens, rate: 0.5, runs, ...time },
    fidelity: {
      passages: passages.length,
      measure: 'mean next-sentence NLL (nats/token) given BOS + compressed context; random = as many context tokens kept uniformly at random (3 draws)',
      notes: 'passages have no question segment: longllmlingua falls back to perplexity ranking and plain surprisal',
      rates: RATES,
      methods: Object.fromEntries(
        Object.entries(fidelity).map(([m, rs]) => [
          m,
          rs.map((r) => ({
            rate: r.rate,
            kept: round(r.keptRatio),
            full: round(r.full),
            nll: round(r.method),
            random: round(r.random),
            winRate: round(r.winRate),
          })),
        ]),
      ),
    },
  };
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

function round(x: number): number {
  return Math.round(x * 10000) / 10000;
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
