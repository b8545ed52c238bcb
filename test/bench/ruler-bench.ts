/**
 * The long-context CAP table, one context length per process: RULER-style items
 * (test/bench/ruler) served by the real engine on the long-context model, first
 * with full attention, then by every policy at every budget, one request at a
 * time so each figure is that policy's own:
 * - A: task accuracy (RULER's string_match_all, with a 95% Wilson interval), and
 *   KL(full || policy) and top-1 agreement of the next-token distributions while
 *   the policy's greedy answer still equals full attention's (from the first
 *   divergence on, the two condition on different text and are not compared);
 * - P: time to first token (compression, prefill, scoring and eviction), and
 *   decode ms per token after the first, both wall clock around the engine steps;
 * - C: peak and final KV bytes, read from the KV pool's allocation.
 * Prints one JSON line (RulerBenchResult).
 */
import { parseArgs } from 'node:util';
import { DEFAULT_SAMPLING, type GenerateRequest, type TokenEvent } from '../../src/engine/types.js';
import type { Policy } from '../../src/policies/policy.js';
import { openTestCore, type TestCore } from '../helpers/core.js';
import { buildItems, loadHaystacks, policyAtBudget, type EvalItem } from './ruler/items.js';
import { RULER_TASKS, scoreCompletion, type RulerTask } from './ruler/tasks.js';
import { compareRows } from './compare-rows.js';
import { median } from './stats.js';

export interface RunMeasure {
  readonly score: number;
  readonly ttftMs: number;
  readonly decodeMsPerToken: number | null;
  readonly peakKvBytes: number;
  readonly finalKvBytes: number;
  readonly kl: number | null;
  readonly top1: number | null;
  readonly comparedSteps: number;
  readonly kept: number;
}

export interface Cell {
  readonly policy: string;
  readonly method: string;
  readonly budget: number;
  readonly context: number;
  readonly items: number;
  readonly accuracy: number;
  readonly ci95: readonly [number, number];
  readonly byTask: Readonly<Record<string, { readonly n: number; readonly accuracy: number }>>;
  readonly klMean: number | null;
  readonly top1Mean: number | null;
  readonly ttftMsP50: number;
  readonly decodeMsP50: number | null;
  readonly peakKvBytesP50: number;
  readonly finalKvBytesP50: number;
  readonly keptMean: number;
  readonly errors: number;
}

export interface RulerBenchResult {
  readonly model: string;
  readonly context: number;
  readonly promptTokensP50: number;
  readonly cells: Cell[];
}

/** Wilson score interval for a proportion (scores in [0, 1] averaged over n items). */
export function wilson(p: number, n: number, z = 1.96): [number, number] {
  if (n === 0) return [0, 1];
  const d = 1 + (z * z) / n;
  const c = (p + (z * z) / (2 * n)) / d;
  const h = (z * Math.sqrt((p * (1 - p)) / n + (z * z) / (4 * n * n))) / d;
  return [Math.max(0, c - h), Math.min(1, c + h)];
}

interface Run {
  readonly text: string;
  readonly tokens: number[];
  readonly rows: Float32Array | null;
  readonly ttftMs: number;
  readonly decodeMsPerToken: number | null;
  readonly peakKvBytes: number;
  readonly finalKvBytes: number;
  readonly kept: number;
}

async function runOne(c: TestCore, req: GenerateRequest): Promise<Run> {
  const core = c.core;
  const base = core.stats().kvBytesUsed;
  const t0 = performance.now();
  core.submit(req);
  let first: number | null = null;
  let peak = 0;
  let last = 0;
  const events: TokenEvent[] = [];
  for (;;) {
    await core.step();
    const used = core.stats().kvBytesUsed - base;
    peak = Math.max(peak, used);
    for (const o of core.drain()) {
      if (o.id !== req.id) continue;
      if ('error' in o) throw new Error(`${o.error.code}: ${o.error.message}`);
      if (!('event' in o)) continue;
      events.push(o.event);
      const now = performance.now();
      if (o.event.type === 'token' && first === null) first = now;
      if (o.event.type === 'done') {
        const tokens = events.flatMap((e) => (e.type === 'token' ? [e.tokenId] : []));
        const ttft = (first ?? now) - t0;
        return {
          // Token events carry the text as it streams; `done` carries only what was held back.
          text: events.map((e) => (e.type === 'token' ? e.text : '')).join('') + o.event.text,
          tokens,
          rows: o.event.capturedLogprobs ?? null,
          ttftMs: ttft,
          decodeMsPerToken: tokens.length > 1 && first !== null ? (now - first) / (tokens.length - 1) : null,
          peakKvBytes: peak,
          finalKvBytes: last,
          kept: o.event.policy.compressionRatio,
        };
      }
    }
    last = used;
    if (!core.hasWork()) throw new Error(`request ${req.id} never finished`);
  }
}

/** KL(full || policy) and top-1 agreement over the steps where both decoded the same text so far. */
function compare(full: Run, run: Run, V: number): { kl: number | null; top1: number | null; steps: number } {
  if (!full.rows || !run.rows) return { kl: null, top1: null, steps: 0 };
  let kl = 0;
  let agree = 0;
  let steps = 0;
  const n = Math.min(full.tokens.length, run.tokens.length, full.rows.length / V, run.rows.length / V);
  for (let s = 0; s < n; s++) {
    const c = compareRows(full.rows, run.rows, s, V);
    kl += c.kl;
    if (c.fullTop === c.policyTop) agree += 1;
    steps += 1;
    if (full.tokens[s] !== run.tokens[s]) break;
  }
  return steps === 0 ? { kl: null, top1: null, steps } : { kl: kl / steps, top1: agree / steps, steps };
}

function request(id: string, e: EvalItem, policy: Policy | undefined): GenerateRequest {
  return {
    id,
    promptTokens: e.promptTokens,
    segments: e.segments,
    sampling: { ...DEFAULT_SAMPLING, temperature: 0, maxTokens: e.maxTokens },
    policy: policy?.name ?? 'full',
    ...(policy ? { servingPolicy: policy } : {}),
    captureLogprobs: true,
  };
}

function cellOf(policy: string, method: string, budget: number, context: number, items: readonly EvalItem[], runs: readonly (RunMeasure | null)[]): Cell {
  const ok = runs.filter((r): r is RunMeasure => r !== null);
  const scores = runs.map((r) => r?.score ?? 0);
  const accuracy = scores.reduce((a, b) => a + b, 0) / Math.max(1, scores.length);
  const byTask: Record<string, { n: number; accuracy: number }> = {};
  items.forEach((e, i) => {
    const t = (byTask[e.item.task] ??= { n: 0, accuracy: 0 });
    t.accuracy = (t.accuracy * t.n + (scores[i] ?? 0)) / (t.n + 1);
    t.n += 1;
  });
  const kls = ok.flatMap((r) => (r.kl === null ? [] : [r.kl]));
  const top1s = ok.flatMap((r) => (r.top1 === null ? [] : [r.top1]));
  const decodes = ok.flatMap((r) => (r.decodeMsPerToken === null ? [] : [r.decodeMsPerToken]));
  const mean = (xs: number[]): number | null => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : null);
  return {
    policy,
    method,
    budget,
    context,
    items: items.length,
    accuracy,
    ci95: wilson(accuracy, scores.length),
    byTask,
    klMean: mean(kls),
    top1Mean: mean(top1s),
    ttftMsP50: median(ok.map((r) => r.ttftMs)),
    decodeMsP50: decodes.length ? median(decodes) : null,
    peakKvBytesP50: median(ok.map((r) => r.peakKvBytes)),
    finalKvBytesP50: median(ok.map((r) => r.finalKvBytes)),
    keptMean: mean(ok.map((r) => r.kept)) ?? 0,
    errors: runs.length - ok.length,
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      model: { type: 'string' },
      text: { type: 'string' },
      context: { type: 'string', default: '4096' },
      tasks: { type: 'string', default: RULER_TASKS.join(',') },
      'per-task': { type: 'string', default: '4' },
      methods: { type: 'string', default: '' },
      budgets: { type: 'string', default: '0.5,0.25,0.125' },
      threads: { type: 'string', default: '2' },
      'prefill-chunk': { type: 'string', default: '512' },
      /** Print each full-attention completion beside its expected answers (stderr). */
      show: { type: 'boolean', default: false },
    },
  });
  if (!values.model || !values.text) throw new Error('--model and --text are required');
  const context = Number(values.context);
  const c = await openTestCore(values.model, { threads: Number(values.threads), prefillChunk: Number(values['prefill-chunk']), kvBudgetBytes: 4 * 1024 ** 3 });
  const tok = c.checkpoint.tokenizer;
  const haystacks = loadHaystacks(values.text, tok);
  const tasks = values.tasks.split(',').filter(Boolean) as RulerTask[];
  const items = tasks.flatMap((t) => buildItems(t, context, Number(values['per-task']), haystacks, tok, c.checkpoint.spec.bosTokenId));
  const V = c.checkpoint.spec.vocabSize;
  const cells: Cell[] = [];
  // Warm-up: session creation and first-run costs are not any policy's.
  await runOne(c, request('warm', items[0] as EvalItem, undefined));
  const fullRuns: Run[] = [];
  const fullMeasures: (RunMeasure | null)[] = [];
  for (const [i, e] of items.entries()) {
    const r = await runOne(c, request(`full-${i}`, e, undefined));
    fullRuns.push(r);
    if (values.show)
      process.stderr.write(
        `${e.item.task} depth ${e.item.depth.toFixed(2)}: expected ${e.item.answers.join(',')} got ${JSON.stringify(r.text)} ${JSON.stringify(r.tokens)}\n`,
      );
    fullMeasures.push({
      score: scoreCompletion(e.item, r.text),
      ttftMs: r.ttftMs,
      decodeMsPerToken: r.decodeMsPerToken,
      peakKvBytes: r.peakKvBytes,
      finalKvBytes: r.finalKvBytes,
      kl: 0,
      top1: 1,
      comparedSteps: r.tokens.length,
      kept: 1,
    });
  }
  cells.push(cellOf('full', 'full', 1, context, items, fullMeasures));
  process.stderr.write(`full @${context}: ${JSON.stringify(cells[0])}\n`);
  const methods = values.methods.split(',').filter(Boolean);
  const budgets = values.budgets.split(',').map(Number);
  for (const method of methods) {
    for (const budget of budgets) {
      const policy = policyAtBudget(method, budget, context);
      // The variant graphs open on first use; that cost belongs to no single request.
      await runOne(c, request(`warm-${policy.name}`, items[0] as EvalItem, policy)).catch(() => undefined);
      const measures: (RunMeasure | null)[] = [];
      for (const [i, e] of items.entries()) {
        try {
          const r = await runOne(c, request(`${policy.name}-${i}`, e, policy));
          const cmp = compare(fullRuns[i] as Run, r, V);
          if (values.show)
            process.stderr.write(
              `${policy.name} ${e.item.task} depth ${e.item.depth.toFixed(2)}: expected ${e.item.answers.join(',')} got ${JSON.stringify(r.text)}\n`,
            );
          measures.push({
            score: scoreCompletion(e.item, r.text),
            ttftMs: r.ttftMs,
            decodeMsPerToken: r.decodeMsPerToken,
            peakKvBytes: r.peakKvBytes,
            finalKvBytes: r.finalKvBytes,
            kl: cmp.kl,
            top1: cmp.top1,
            comparedSteps: cmp.steps,
            kept: r.kept,
          });
        } catch (err) {
          process.stderr.write(`${policy.name} item ${i}: ${err instanceof Error ? err.message : String(err)}\n`);
          measures.push(null);
        }
      }
      const cell = cellOf(policy.name, method, budget, context, items, measures);
      cells.push(cell);
      process.stderr.write(
        `${policy.name} @${context}: acc ${cell.accuracy.toFixed(3)} KL ${cell.klMean?.toFixed(4)} ttft ${cell.ttftMsP50.toFixed(0)} ms decode ${cell.decodeMsP50?.toFixed(2)} ms kv ${(cell.peakKvBytesP50 / 2 ** 20).toFixed(1)}/${(cell.finalKvBytesP50 / 2 ** 20).toFixed(1)} MiB\n`,
      );
    }
  }
  await c.close();
  const result: RulerBenchResult = { model: values.model, context, promptTokensP50: median(items.map((e) => e.promptTokens.length)), cells };
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`ruler-bench: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
