/**
 * Constrained decoding overhead, in its own process: the same served engine
 * (worker, scheduler, sampler) decoding at batch 1, unconstrained and under a
 * grammar, seeded at temperature 1. The grammar is the worst case for the
 * mask: a JSON array of free strings, where almost every token is allowed,
 * so each new parser state walks nearly the whole vocabulary trie. Reports
 * inter-token latency distributions for each, the engine's own grammar time
 * per token (mask + advance, from the request's constraint report), cold (the
 * automaton built during the request) and warm (the same grammar again: the
 * engine caches automata by grammar). Prints one JSON line.
 *
 *   node dist/test/bench/grammar-bench.js --model DIR [--steps 64] [--threads 2]
 */
import { parseArgs } from 'node:util';
import { cpus } from 'node:os';
import { createLocalEngine } from '../../src/engine/local-engine.js';
import { DEFAULT_SAMPLING, type EngineClient, type GenerateRequest } from '../../src/engine/types.js';
import { grammarFromJsonSchema } from '../../src/engine/grammar/json-schema.js';
import { distribution, type Distribution } from './stats.js';

export interface GrammarBenchResult {
  readonly model: string;
  readonly cpus: number;
  readonly steps: number;
  readonly unconstrainedItlMs: Distribution;
  readonly constrainedColdItlMs: Distribution;
  readonly constrainedWarmItlMs: Distribution;
  /** Engine time in the grammar (mask + advance) per generated token. */
  readonly grammarMsPerTokenCold: number;
  readonly grammarMsPerTokenWarm: number;
  readonly tokensCold: number;
  readonly tokensWarm: number;
  readonly automatonStates: number;
  /** p50 ITL constrained (warm) / unconstrained. */
  readonly itlRatioWarm: number;
  readonly itlRatioCold: number;
}

async function run(engine: EngineClient, request: GenerateRequest): Promise<{ itl: number[]; tokens: number; maskMs: number; states: number }> {
  const itl: number[] = [];
  let last = 0;
  let tokens = 0;
  let maskMs = 0;
  let states = 0;
  for await (const ev of engine.generate(request)) {
    const now = performance.now();
    if (ev.type === 'token') {
      if (tokens > 0) itl.push(now - last);
      tokens += 1;
    } else {
      maskMs = ev.constraint?.maskMs ?? 0;
      states = ev.constraint?.states ?? 0;
    }
    last = now;
  }
  return { itl, tokens, maskMs, states };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      model: { type: 'string' },
      steps: { type: 'string', default: '64' },
      threads: { type: 'string', default: '2' },
      'cache-dir': { type: 'string', default: '.cache/compiled' },
    },
  });
  if (!values.model) throw new Error('--model is required');
  const steps = Number(values.steps);
  const threads = Number(values.threads);
  const engine = await createLocalEngine({ modelDir: values.model, cacheDir: values['cache-dir'], threads, maxConcurrent: 1 });
  const V = engine.models()[0]?.vocabSize ?? 1000;
  const prompt = Array.from({ length: 16 }, (_, i) => 10 + ((i * 37) % (V - 20)));
  const sampling = { ...DEFAULT_SAMPLING, temperature: 1, seed: 7, maxTokens: steps, ignoreEos: true };
  const grammar = grammarFromJsonSchema({ type: 'array', items: { type: 'string' } });
  // Warm-up: graph load and the first-run allocations, outside every measurement.
  await run(engine, { id: 'warm', promptTokens: prompt, policy: 'full', sampling: { ...sampling, maxTokens: 4 } });
  const plain = await run(engine, { id: 'plain', promptTokens: prompt, policy: 'full', sampling });
  const cold = await run(engine, { id: 'cold', promptTokens: prompt, policy: 'full', sampling, grammar });
  const warm = await run(engine, { id: 'warm2', promptTokens: prompt, policy: 'full', sampling, grammar });
  await engine.close();
  const u = distribution(plain.itl);
  const c = distribution(cold.itl);
  const w = distribution(warm.itl);
  const result: GrammarBenchResult = {
    model: values.model,
    cpus: cpus().length,
    steps,
    unconstrainedItlMs: u,
    constrainedColdItlMs: c,
    constrainedWarmItlMs: w,
    grammarMsPerTokenCold: cold.maskMs / Math.max(1, cold.tokens),
    grammarMsPerTokenWarm: warm.maskMs / Math.max(1, warm.tokens),
    tokensCold: cold.tokens,
    tokensWarm: warm.tokens,
    automatonStates: warm.states,
    itlRatioWarm: w.p50 / u.p50,
    itlRatioCold: c.p50 / u.p50,
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

await main();
