/**
 * The serving section, in its own process: the real server (worker, scheduler,
 * HTTP, SSE) started once per configuration on the same model in the same run:
 * as configured (chunked prefill sized by the step latency target, prefix
 * cache), with both off (`engine.maxTokensPerStep=0`, `engine.stepTargetMs=0`,
 * `engine.prefixCache.enabled=false`: the behaviour before them), with chunks
 * sized by a step latency target (`engine.stepTargetMs=200`, against the
 * configured token budget), plus any --budgets or --targets to compare. The servers are
 * used in turn, interleaved round by round (one works at a time), so a shared
 * machine's load falls on all alike. Per concurrency: streaming chat, closed
 * loop, clients starting staggered so prompts arrive while others decode;
 * time to first token and inter-token latency distributions (pooled over the
 * rounds), tokens/s (median over rounds) and the server's RSS. Then a
 * multi-turn workload, one conversation at a time, timing each second turn
 * (system prompt, first question, the model's answer, a new question). Every
 * prompt differs from the others from its first words, so only the multi-turn
 * workload can hit the prefix cache. Prints one JSON line.
 */
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { chatTokens, rssMiB, startServer, streamChat, type ChatMessage, type Server, type StreamTiming } from './serving-client.js';
import { distribution, median, type Distribution } from './stats.js';

export interface ConcurrencyRun {
  readonly clients: number;
  readonly requests: number;
  readonly tokensPerSecond: number;
  readonly ttftMs: Distribution;
  readonly itlMs: Distribution;
  readonly wallMs: number;
  readonly rssMiB: number;
  readonly peakRssMiB: number;
}

export interface MultiTurnRun {
  readonly conversations: number;
  /** Median prompt tokens of the second turn. */
  readonly turn2PromptTokens: number;
  readonly turn1TtftMs: number;
  readonly turn2TtftMs: number;
  /** Median prompt tokens of the second turn the prefix cache served. */
  readonly turn2CachedTokens: number;
}

export interface ServingConfigResult {
  readonly name: string;
  readonly sets: readonly string[];
  readonly runs: readonly ConcurrencyRun[];
  readonly multiTurn: MultiTurnRun;
}

export interface ServingResult {
  readonly model: string;
  readonly threads: number;
  readonly promptTokens: number;
  readonly maxTokens: number;
  /** 1-minute load average before and after (the machine is shared). */
  readonly loadAverage: readonly [number, number];
  readonly on: ServingConfigResult;
  readonly off: ServingConfigResult;
  /** on / off, per concurrency. */
  readonly itlP99Ratio: Readonly<Record<string, number>>;
  readonly itlP50Ratio: Readonly<Record<string, number>>;
  readonly ttftP50Ratio: Readonly<Record<string, number>>;
  readonly tokensPerSecondRatio: Readonly<Record<string, number>>;
  /** Median second-turn TTFT, prefix cache on / off. */
  readonly turn2TtftRatio: number;
  /** The latency target (engine.stepTargetMs=200), then --budgets and --targets: the same runs with other values (prefix cache on). */
  readonly sweep: readonly ServingConfigResult[];
  /** Every configuration but off, against off, per concurrency. */
  readonly vsOff: Readonly<Record<string, VsOff>>;
}

export interface VsOff {
  readonly itlP99: Readonly<Record<string, number>>;
  readonly itlP50: Readonly<Record<string, number>>;
  readonly ttftP50: Readonly<Record<string, number>>;
  readonly ttftP99: Readonly<Record<string, number>>;
  readonly tokensPerSecond: Readonly<Record<string, number>>;
}

const WORDS =
  'the a small river ran past old stone houses where children played and watched birds fly over green hills while bakers sold warm bread to travellers who came from distant towns with stories of snow storms and summer fairs'.split(
    ' ',
  );

/** Text of about `words` words, different from every other `tag` from its first word on. */
function text(tag: string, words: number, seed: number): string {
  const out = [tag];
  for (let i = 0; i < words; i++) out.push(WORDS[(i * 7 + seed * 13) % WORDS.length] ?? 'the');
  return out.join(' ');
}

/** Words giving about `target` chat tokens (one measurement, scaled, then checked). */
async function wordsFor(base: string, target: number, wrap: (body: string) => ChatMessage[]): Promise<number> {
  const probe = 100;
  const perWord = (await chatTokens(base, wrap(text('probe', probe, 0)))) / probe;
  let words = Math.max(1, Math.round(target / perWord));
  for (let i = 0; i < 4; i++) {
    const n = await chatTokens(base, wrap(text('probe', words, 0)));
    if (Math.abs(n - target) <= Math.max(2, target * 0.02)) break;
    words = Math.max(1, Math.round(words * (target / n)));
  }
  return words;
}

/** Every request of one concurrency run, timed. */
async function concurrencyTimings(
  base: string,
  clients: number,
  perClient: number,
  words: number,
  maxTokens: number,
  staggerMs: number,
  round: number,
): Promise<{ timings: StreamTiming[]; wallMs: number }> {
  const t0 = performance.now();
  const timings: StreamTiming[] = [];
  await Promise.all(
    Array.from({ length: clients }, async (_, c) => {
      await new Promise((res) => setTimeout(res, c * staggerMs));
      for (let r = 0; r < perClient; r++) {
        const prompt = text(`Request ${round}-${clients}-${c}-${r}:`, words, c * 31 + r + round);
        timings.push(await streamChat(base, [{ role: 'user', content: prompt }], maxTokens));
      }
    }),
  );
  return { timings, wallMs: performance.now() - t0 };
}

/** One multi-turn conversation: turn 1, then turn 2 with the model's answer in the history. */
async function conversation(
  base: string,
  i: number,
  systemWords: number,
  answerTokens: number,
): Promise<{ t1: number; t2: number; cached: number; prompt2: number }> {
  const system: ChatMessage = { role: 'system', content: text(`Conversation ${i}. You are a guide.`, systemWords, i) };
  const user1: ChatMessage = { role: 'user', content: text('Tell me about the river.', 30, i + 1) };
  const first = await streamChat(base, [system, user1], answerTokens);
  const turn2: ChatMessage[] = [system, user1, { role: 'assistant', content: first.text }, { role: 'user', content: text('And the hills?', 20, i + 2) }];
  const second = await streamChat(base, turn2, 8);
  return { t1: first.ttftMs, t2: second.ttftMs, cached: second.cachedTokens, prompt2: await chatTokens(base, turn2) };
}

interface Plan {
  readonly model: string;
  readonly port: number;
  readonly threads: number;
  readonly concurrency: readonly number[];
  readonly perClient: number;
  readonly rounds: number;
  readonly promptTokens: number;
  readonly maxTokens: number;
  readonly staggerMs: number;
  readonly conversations: number;
  readonly systemTokens: number;
}

interface Config {
  readonly name: string;
  readonly sets: readonly string[];
}

/**
 * Starts one server per configuration, then interleaves them: each round of
 * each concurrency and each conversation runs on every server in turn (order
 * alternating per round), so a shared machine's load drifts over all of them
 * alike. Only one server works at a time.
 */
async function runConfigs(plan: Plan, configs: readonly Config[]): Promise<ServingConfigResult[]> {
  const common = [
    `server.maxConcurrent=${Math.max(...plan.concurrency)}`,
    'server.maxQueue=1024',
    `engine.threads=${plan.threads}`,
    'memory.kvBudgetBytes=8589934592',
    'shadow.sampleRate=0',
  ];
  const servers: Server[] = [];
  try {
    for (const [i, c] of configs.entries()) servers.push(await startServer(plan.model, plan.port + i, [...common, ...c.sets]));
    const first = servers[0] as Server;
    const words = await wordsFor(first.base, plan.promptTokens, (body) => [{ role: 'user', content: body }]);
    const systemWords = await wordsFor(first.base, plan.systemTokens, (body) => [{ role: 'system', content: body }]);
    for (const s of servers) await streamChat(s.base, [{ role: 'user', content: text('warm-up', 16, 0) }], 4);
    const order = (round: number): number[] => configs.map((_, i) => i).map((i) => (round % 2 === 0 ? i : configs.length - 1 - i));
    const runs: ConcurrencyRun[][] = configs.map(() => []);
    for (const clients of plan.concurrency) {
      const timings: StreamTiming[][] = configs.map(() => []);
      const rates: number[][] = configs.map(() => []);
      let wall: number[] = configs.map(() => 0);
      for (let round = 0; round < plan.rounds; round++) {
        for (const i of order(round)) {
          const r = await concurrencyTimings((servers[i] as Server).base, clients, plan.perClient, words, plan.maxTokens, plan.staggerMs, round);
          timings[i]?.push(...r.timings);
          rates[i]?.push((r.timings.reduce((n, t) => n + t.tokens, 0) * 1000) / r.wallMs);
          wall = wall.map((w, k) => (k === i ? w + r.wallMs : w));
        }
      }
      configs.forEach((c, i) => {
        const t = timings[i] ?? [];
        const mem = rssMiB((servers[i] as Server).pid);
        runs[i]?.push({
          clients,
          requests: t.length,
          tokensPerSecond: median(rates[i] ?? []),
          ttftMs: distribution(t.map((x) => x.ttftMs)),
          itlMs: distribution(t.flatMap((x) => x.itlMs)),
          wallMs: wall[i] ?? NaN,
          rssMiB: mem.rss,
          peakRssMiB: mem.peak,
        });
        process.stderr.write(
          `  serving ${c.name} c=${clients}: TTFT p50 ${runs[i]?.at(-1)?.ttftMs.p50.toFixed(0)} ms, ITL p99 ${runs[i]?.at(-1)?.itlMs.p99.toFixed(1)} ms\n`,
        );
      });
    }
    const turns: { t1: number; t2: number; cached: number; prompt2: number }[][] = configs.map(() => []);
    for (let k = 0; k < plan.conversations; k++) {
      for (const i of order(k)) turns[i]?.push(await conversation((servers[i] as Server).base, k, systemWords, 32));
    }
    return configs.map((c, i) => {
      const t = turns[i] ?? [];
      const multiTurn: MultiTurnRun = {
        conversations: t.length,
        turn2PromptTokens: median(t.map((x) => x.prompt2)),
        turn1TtftMs: median(t.map((x) => x.t1)),
        turn2TtftMs: median(t.map((x) => x.t2)),
        turn2CachedTokens: median(t.map((x) => x.cached)),
      };
      return { name: c.name, sets: c.sets, runs: runs[i] ?? [], multiTurn };
    });
  } finally {
    for (const s of servers) await s.stop();
  }
}

const ratios = (on: ServingConfigResult, off: ServingConfigResult, read: (r: ConcurrencyRun) => number): Record<string, number> =>
  Object.fromEntries(on.runs.map((r, i) => [String(r.clients), read(r) / read(off.runs[i] ?? r)]));

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      model: { type: 'string' },
      port: { type: 'string', default: '18451' },
      threads: { type: 'string', default: '2' },
      concurrency: { type: 'string', default: '1,8,32' },
      'requests-per-client': { type: 'string', default: '1' },
      rounds: { type: 'string', default: '2' },
      'prompt-tokens': { type: 'string', default: '256' },
      'max-tokens': { type: 'string', default: '128' },
      'stagger-ms': { type: 'string', default: '150' },
      conversations: { type: 'string', default: '4' },
      'system-tokens': { type: 'string', default: '400' },
      budgets: { type: 'string', default: '' },
      targets: { type: 'string', default: '' },
    },
  });
  if (!values.model) throw new Error('--model is required');
  const plan: Plan = {
    model: values.model,
    port: Number(values.port),
    threads: Number(values.threads),
    concurrency: values.concurrency.split(',').map(Number),
    perClient: Number(values['requests-per-client']),
    rounds: Number(values.rounds),
    promptTokens: Number(values['prompt-tokens']),
    maxTokens: Number(values['max-tokens']),
    staggerMs: Number(values['stagger-ms']),
    conversations: Number(values.conversations),
    systemTokens: Number(values['system-tokens']),
  };
  const before = loadavg()[0] ?? NaN;
  const configs: Config[] = [
    { name: 'on', sets: [] },
    { name: 'off', sets: ['engine.maxTokensPerStep=0', 'engine.stepTargetMs=0', 'engine.prefixCache.enabled=false'] },
    { name: 'latency-target', sets: ['engine.stepTargetMs=200'] },
    // onnxruntime's threads sleeping between kernels (the others spin-wait, its default).
    { name: 'sleeping', sets: ['engine.threadSpinning=false'] },
    ...values.budgets
      .split(',')
      .filter((x) => x !== '')
      .map((b) => ({ name: `budget-${b}`, sets: [`engine.maxTokensPerStep=${b}`, 'engine.stepTargetMs=0'] })),
    ...values.targets
      .split(',')
      .filter((x) => x !== '')
      .map((ms) => ({ name: `target-${ms}ms`, sets: [`engine.stepTargetMs=${ms}`] })),
  ];
  const [on, off, ...sweep] = await runConfigs(plan, configs);
  if (!on || !off) throw new Error('unreachable: no results');
  const result: ServingResult = {
    model: plan.model,
    threads: plan.threads,
    promptTokens: plan.promptTokens,
    maxTokens: plan.maxTokens,
    loadAverage: [before, loadavg()[0] ?? NaN],
    on,
    off,
    itlP99Ratio: ratios(on, off, (r) => r.itlMs.p99),
    itlP50Ratio: ratios(on, off, (r) => r.itlMs.p50),
    ttftP50Ratio: ratios(on, off, (r) => r.ttftMs.p50),
    tokensPerSecondRatio: ratios(on, off, (r) => r.tokensPerSecond),
    turn2TtftRatio: on.multiTurn.turn2TtftMs / off.multiTurn.turn2TtftMs,
    sweep,
    vsOff: Object.fromEntries(
      [on, ...sweep].map((c) => [
        c.name,
        {
          itlP99: ratios(c, off, (r) => r.itlMs.p99),
          itlP50: ratios(c, off, (r) => r.itlMs.p50),
          ttftP50: ratios(c, off, (r) => r.ttftMs.p50),
          ttftP99: ratios(c, off, (r) => r.ttftMs.p99),
          tokensPerSecond: ratios(c, off, (r) => r.tokensPerSecond),
        },
      ]),
    ),
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`serving-bench: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
