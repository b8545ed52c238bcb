/**
 * The serving section, in its own process: the real server (worker, scheduler,
 * HTTP, SSE) started twice on the same model in the same run, once as
 * configured (chunked-prefill token budget per step, prefix cache) and once
 * with both off (`engine.maxTokensPerStep=0`, `engine.prefixCache.enabled=false`:
 * the behaviour before them). For each: streaming chat at each concurrency,
 * closed loop (every client sends its next request when the last one ends,
 * clients starting staggered so prompts arrive while others decode), with
 * time to first token and inter-token latency distributions, throughput and
 * the server's RSS; then a multi-turn workload, one conversation at a time,
 * timing each second turn (system prompt, first question, the model's answer,
 * a new question). Every prompt differs from the others from its first
 * words, so only the multi-turn workload can hit the prefix cache. Prints one
 * JSON line.
 */
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { chatTokens, rssMiB, startServer, streamChat, type ChatMessage, type StreamTiming } from './serving-client.js';
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
  /** --budgets: the same runs with other engine.maxTokensPerStep values (prefix cache on). */
  readonly sweep: readonly ServingConfigResult[];
}

const WORDS = 'the a small river ran past old stone houses where children played and watched birds fly over green hills while bakers sold warm bread to travellers who came from distant towns with stories of snow storms and summer fairs'.split(' ');

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

async function concurrencyRun(base: string, pid: number, clients: number, perClient: number, words: number, maxTokens: number, staggerMs: number): Promise<ConcurrencyRun> {
  const t0 = performance.now();
  const timings: StreamTiming[] = [];
  await Promise.all(
    Array.from({ length: clients }, async (_, c) => {
      await new Promise((res) => setTimeout(res, c * staggerMs));
      for (let r = 0; r < perClient; r++) {
        const prompt = text(`Request ${clients}-${c}-${r}:`, words, c * 31 + r);
        timings.push(await streamChat(base, [{ role: 'user', content: prompt }], maxTokens));
      }
    }),
  );
  const wallMs = performance.now() - t0;
  const tokens = timings.reduce((n, t) => n + t.tokens, 0);
  const mem = rssMiB(pid);
  return {
    clients,
    requests: timings.length,
    tokensPerSecond: (tokens * 1000) / wallMs,
    ttftMs: distribution(timings.map((t) => t.ttftMs)),
    itlMs: distribution(timings.flatMap((t) => t.itlMs)),
    wallMs,
    rssMiB: mem.rss,
    peakRssMiB: mem.peak,
  };
}

async function multiTurn(base: string, conversations: number, systemWords: number, answerTokens: number): Promise<MultiTurnRun> {
  const t1: number[] = [];
  const t2: number[] = [];
  const prompt2: number[] = [];
  const cached: number[] = [];
  for (let i = 0; i < conversations; i++) {
    const system: ChatMessage = { role: 'system', content: text(`Conversation ${i}. You are a guide.`, systemWords, i) };
    const user1: ChatMessage = { role: 'user', content: text('Tell me about the river.', 30, i + 1) };
    const first = await streamChat(base, [system, user1], answerTokens);
    const turn2: ChatMessage[] = [system, user1, { role: 'assistant', content: first.text }, { role: 'user', content: text('And the hills?', 20, i + 2) }];
    const second = await streamChat(base, turn2, 8);
    t1.push(first.ttftMs);
    t2.push(second.ttftMs);
    cached.push(second.cachedTokens);
    prompt2.push(await chatTokens(base, turn2));
  }
  return { conversations, turn2PromptTokens: median(prompt2), turn1TtftMs: median(t1), turn2TtftMs: median(t2), turn2CachedTokens: median(cached) };
}

interface Plan {
  readonly model: string;
  readonly port: number;
  readonly threads: number;
  readonly concurrency: readonly number[];
  readonly perClient: number;
  readonly promptTokens: number;
  readonly maxTokens: number;
  readonly staggerMs: number;
  readonly conversations: number;
  readonly systemTokens: number;
}

async function runConfig(plan: Plan, name: string, sets: readonly string[]): Promise<ServingConfigResult> {
  const common = [
    `server.maxConcurrent=${Math.max(...plan.concurrency)}`,
    'server.maxQueue=1024',
    `engine.threads=${plan.threads}`,
    'memory.kvBudgetBytes=8589934592',
    'shadow.sampleRate=0',
  ];
  const server = await startServer(plan.model, plan.port, [...common, ...sets]);
  try {
    const words = await wordsFor(server.base, plan.promptTokens, (body) => [{ role: 'user', content: body }]);
    const systemWords = await wordsFor(server.base, plan.systemTokens, (body) => [{ role: 'system', content: body }]);
    await streamChat(server.base, [{ role: 'user', content: text('warm-up', 16, 0) }], 4);
    const runs: ConcurrencyRun[] = [];
    for (const c of plan.concurrency) {
      runs.push(await concurrencyRun(server.base, server.pid, c, plan.perClient, words, plan.maxTokens, plan.staggerMs));
      process.stderr.write(`  serving ${name} c=${c}: ITL p99 ${runs.at(-1)?.itlMs.p99.toFixed(1)} ms\n`);
    }
    const mt = await multiTurn(server.base, plan.conversations, systemWords, 32);
    return { name, sets, runs, multiTurn: mt };
  } finally {
    await server.stop();
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
      'requests-per-client': { type: 'string', default: '2' },
      'prompt-tokens': { type: 'string', default: '256' },
      'max-tokens': { type: 'string', default: '128' },
      'stagger-ms': { type: 'string', default: '150' },
      conversations: { type: 'string', default: '4' },
      'system-tokens': { type: 'string', default: '400' },
      budgets: { type: 'string', default: '' },
    },
  });
  if (!values.model) throw new Error('--model is required');
  const plan: Plan = {
    model: values.model,
    port: Number(values.port),
    threads: Number(values.threads),
    concurrency: values.concurrency.split(',').map(Number),
    perClient: Number(values['requests-per-client']),
    promptTokens: Number(values['prompt-tokens']),
    maxTokens: Number(values['max-tokens']),
    staggerMs: Number(values['stagger-ms']),
    conversations: Number(values.conversations),
    systemTokens: Number(values['system-tokens']),
  };
  const before = loadavg()[0] ?? NaN;
  const on = await runConfig(plan, 'on', []);
  const off = await runConfig(plan, 'off', ['engine.maxTokensPerStep=0', 'engine.prefixCache.enabled=false']);
  const sweep: ServingConfigResult[] = [];
  for (const b of values.budgets.split(',').filter((x) => x !== '')) sweep.push(await runConfig(plan, `budget-${b}`, [`engine.maxTokensPerStep=${b}`]));
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
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`serving-bench: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
