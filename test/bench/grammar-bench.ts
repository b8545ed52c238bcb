/**
 * Constrained decoding overhead, in its own process: the same served engine
 * (worker, scheduler, sampler) decoding at batch 1, unconstrained and under
 * grammars, seeded at temperature 1. Grammars: a JSON array of free strings
 * (the widest masks: almost every token allowed inside a string, so each new
 * parser state walks nearly the whole vocabulary trie), a regex of words, a
 * GBNF grammar, and tool_choice auto (free text: the mask is all ones but is
 * still computed and applied every step).
 *
 * The machine may be shared, so the unconstrained and constrained runs are
 * interleaved in rounds (plain, then each grammar, per round) and the ratio is
 * taken within each round, then its median across rounds. The engine's own
 * grammar time per token (mask + advance, from the constraint report) is
 * reported beside it, against the same round's unconstrained ITL p50, and so
 * is the process CPU time per token (the work a grammar adds, which a loaded
 * machine's preemption does not inflate the way it inflates wall time). The
 * first round's constrained runs are cold (automaton built during the run);
 * later rounds are warm (the engine caches automata by grammar).
 * Prints one JSON line.
 *
 *   node dist/test/bench/grammar-bench.js --model DIR [--steps 64] [--rounds 5] [--threads 2]
 */
import { parseArgs } from 'node:util';
import { cpus, loadavg } from 'node:os';
import { createLocalEngine } from '../../src/engine/local-engine.js';
import { DEFAULT_SAMPLING, type EngineClient, type GenerateRequest } from '../../src/engine/types.js';
import type { Grammar } from '../../src/engine/grammar/grammar.js';
import { grammarFromJsonSchema } from '../../src/engine/grammar/json-schema.js';
import { grammarFromRegex } from '../../src/engine/grammar/regex.js';
import { grammarFromGbnf } from '../../src/engine/grammar/gbnf.js';
import { autoCallGrammar } from '../../src/server/tool-grammar.js';
import { distribution, median, quantile, type Distribution } from './stats.js';

const sorted = (xs: readonly number[]): number[] => [...xs].sort((a, b) => a - b);

export interface GrammarCase {
  readonly name: string;
  /** Median over warm rounds of (constrained ITL p50 / same round's unconstrained ITL p50). */
  readonly itlRatioWarm: number;
  /** The first round (automaton built during the run). */
  readonly itlRatioCold: number;
  readonly itlWarmMs: Distribution;
  readonly grammarMsPerTokenWarm: number;
  readonly grammarMsPerTokenCold: number;
  /** Warm grammar time per token / the round's unconstrained ITL p50, median over rounds. */
  readonly grammarShareWarm: number;
  /** Median over warm rounds of (constrained / unconstrained) process CPU time per token: the work added, robust to a loaded machine. */
  readonly cpuRatioWarm: number;
  /** Median over warm rounds of the ratio of ITL p10 (the least-preempted steps). */
  readonly itlP10RatioWarm: number;
  readonly automatonStates: number;
  readonly tokens: number;
}

export interface GrammarBenchResult {
  readonly model: string;
  readonly cpus: number;
  /** 1-minute load average at the start and the end (the machine may be shared). */
  readonly loadAverage: readonly [number, number];
  readonly steps: number;
  readonly rounds: number;
  readonly unconstrainedItlMs: Distribution;
  readonly unconstrainedCpuMsPerToken: number;
  readonly cases: readonly GrammarCase[];
  // The JSON-strings case, as earlier reports read it.
  readonly constrainedColdItlMs: Distribution;
  readonly constrainedWarmItlMs: Distribution;
  readonly grammarMsPerTokenCold: number;
  readonly grammarMsPerTokenWarm: number;
  readonly tokensCold: number;
  readonly tokensWarm: number;
  readonly automatonStates: number;
  readonly itlRatioWarm: number;
  readonly itlRatioCold: number;
}

interface Run {
  readonly itl: number[];
  /** Process CPU time (user + system, every thread: the worker and onnxruntime's) per generated token. */
  readonly cpuMsPerToken: number;
  readonly tokens: number;
  readonly maskMs: number;
  readonly states: number;
}

async function run(engine: EngineClient, request: GenerateRequest): Promise<Run> {
  const itl: number[] = [];
  let last = 0;
  let tokens = 0;
  let maskMs = 0;
  let states = 0;
  const cpu0 = process.cpuUsage();
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
  const cpu = process.cpuUsage(cpu0);
  return { itl, cpuMsPerToken: (cpu.user + cpu.system) / 1000 / Math.max(1, tokens), tokens, maskMs, states };
}

const GBNF = `root ::= sentence (" " sentence)*
sentence ::= word ("," " " word | " " word)* "."
word ::= [a-zA-Z]+ | [0-9]{1,4}
`;

function grammars(): { name: string; grammar: Grammar }[] {
  return [
    { name: 'json-array-of-strings', grammar: grammarFromJsonSchema({ type: 'array', items: { type: 'string' } }) },
    { name: 'regex-words', grammar: grammarFromRegex('(\\w+[ ,.]){1,}\\w*') },
    { name: 'gbnf-sentences', grammar: grammarFromGbnf(GBNF) },
    {
      name: 'tools-auto-hermes',
      grammar: autoCallGrammar(
        {
          tools: [
            {
              type: 'function',
              function: {
                name: 'get_weather',
                parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'], additionalProperties: false },
              },
            },
          ],
          choice: 'auto',
          parallel: true,
          format: 'hermes',
          native: true,
        },
        null,
      ),
    },
  ];
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      model: { type: 'string' },
      steps: { type: 'string', default: '64' },
      rounds: { type: 'string', default: '5' },
      threads: { type: 'string', default: '2' },
      'cache-dir': { type: 'string', default: '.cache/compiled' },
    },
  });
  if (!values.model) throw new Error('--model is required');
  const steps = Number(values.steps);
  const rounds = Math.max(2, Number(values.rounds));
  const threads = Number(values.threads);
  const load0 = loadavg()[0] ?? 0;
  const engine = await createLocalEngine({ modelDir: values.model, cacheDir: values['cache-dir'], threads, maxConcurrent: 1 });
  const V = engine.models()[0]?.vocabSize ?? 1000;
  const prompt = Array.from({ length: 16 }, (_, i) => 10 + ((i * 37) % (V - 20)));
  const sampling = { ...DEFAULT_SAMPLING, temperature: 1, seed: 7, maxTokens: steps, ignoreEos: true };
  const cases = grammars();
  // Warm-up: graph load and the first-run allocations, outside every measurement.
  await run(engine, { id: 'warm', promptTokens: prompt, policy: 'full', sampling: { ...sampling, maxTokens: 4 } });
  const plain: Run[] = [];
  const constrained: Run[][] = cases.map(() => []);
  for (let r = 0; r < rounds; r++) {
    plain.push(await run(engine, { id: `plain-${r}`, promptTokens: prompt, policy: 'full', sampling: { ...sampling, seed: 7 + r } }));
    for (const [i, c] of cases.entries()) {
      constrained[i]?.push(
        await run(engine, { id: `${c.name}-${r}`, promptTokens: prompt, policy: 'full', sampling: { ...sampling, seed: 7 + r }, grammar: c.grammar }),
      );
    }
  }
  await engine.close();
  const plainP50 = plain.map((p) => distribution(p.itl).p50);
  const results: GrammarCase[] = cases.map((c, i) => {
    const runs = constrained[i] ?? [];
    const warm = runs.slice(1);
    const cold = runs[0];
    const perToken = (x: Run): number => x.maskMs / Math.max(1, x.tokens);
    return {
      name: c.name,
      itlRatioWarm: median(warm.map((x, k) => distribution(x.itl).p50 / (plainP50[k + 1] ?? NaN))),
      itlRatioCold: cold === undefined ? NaN : distribution(cold.itl).p50 / (plainP50[0] ?? NaN),
      itlWarmMs: distribution(warm.flatMap((x) => x.itl)),
      grammarMsPerTokenWarm: median(warm.map(perToken)),
      grammarMsPerTokenCold: cold === undefined ? NaN : perToken(cold),
      grammarShareWarm: median(warm.map((x, k) => perToken(x) / (plainP50[k + 1] ?? NaN))),
      cpuRatioWarm: median(warm.map((x, k) => x.cpuMsPerToken / (plain[k + 1]?.cpuMsPerToken ?? NaN))),
      itlP10RatioWarm: median(warm.map((x, k) => quantile(sorted(x.itl), 0.1) / quantile(sorted(plain[k + 1]?.itl ?? []), 0.1))),
      automatonStates: runs[runs.length - 1]?.states ?? 0,
      tokens: median(runs.map((x) => x.tokens)),
    };
  });
  const json = results[0] as GrammarCase;
  const jsonRuns = constrained[0] ?? [];
  const result: GrammarBenchResult = {
    model: values.model,
    cpus: cpus().length,
    loadAverage: [load0, loadavg()[0] ?? 0],
    steps,
    rounds,
    unconstrainedItlMs: distribution(plain.flatMap((p) => p.itl)),
    unconstrainedCpuMsPerToken: median(plain.map((p) => p.cpuMsPerToken)),
    cases: results,
    constrainedColdItlMs: distribution(jsonRuns[0]?.itl ?? []),
    constrainedWarmItlMs: json.itlWarmMs,
    grammarMsPerTokenCold: json.grammarMsPerTokenCold,
    grammarMsPerTokenWarm: json.grammarMsPerTokenWarm,
    tokensCold: jsonRuns[0]?.tokens ?? 0,
    tokensWarm: jsonRuns[1]?.tokens ?? 0,
    automatonStates: json.automatonStates,
    itlRatioWarm: json.itlRatioWarm,
    itlRatioCold: json.itlRatioCold,
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

await main();
