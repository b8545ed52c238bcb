/**
 * Reading llama-bench's results and setting them beside capserve's (pure functions; the run
 * itself is llama-cpp-bench.ts). llama-bench (`-o jsonl`) prints one JSON object per test:
 * `n_prompt` tokens of prefill (pp) or `n_gen` tokens of generation (tg), with the mean
 * tokens per second of its repetitions in `avg_ts`.
 */
import type { WeightDtype } from '../../src/model/compile/decoder-graph.js';
import { median } from './stats.js';

/** One llama-bench test: prefill of `promptTokens` (generated 0) or generation of `generatedTokens`. */
export interface LlamaBenchTest {
  readonly promptTokens: number;
  readonly generatedTokens: number;
  readonly tokensPerSecond: number;
  readonly buildCommit: string;
}

/** The tests of llama-bench's `-o jsonl` output; lines that are not a test object are an error. */
export function parseLlamaBenchJsonl(text: string): LlamaBenchTest[] {
  const tests: LlamaBenchTest[] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      throw new Error(`llama-bench printed a line that is not JSON: ${line.slice(0, 120)}`);
    }
    const o = value as { n_prompt?: unknown; n_gen?: unknown; avg_ts?: unknown; build_commit?: unknown };
    if (typeof o.n_prompt !== 'number' || typeof o.n_gen !== 'number' || typeof o.avg_ts !== 'number') {
      throw new Error(`llama-bench printed an object without n_prompt, n_gen and avg_ts: ${line.slice(0, 120)}`);
    }
    tests.push({
      promptTokens: o.n_prompt,
      generatedTokens: o.n_gen,
      tokensPerSecond: o.avg_ts,
      buildCommit: typeof o.build_commit === 'string' ? o.build_commit : 'unknown',
    });
  }
  return tests;
}

/** What a row compares: batch-1 decode, or a prefill of `tokens`. */
export type ComparedTest = { readonly kind: 'decode' } | { readonly kind: 'prefill'; readonly tokens: number };

export function testLabel(test: ComparedTest): string {
  return test.kind === 'decode' ? 'decode, batch 1' : `prefill ${test.tokens} tokens`;
}

/** llama-bench's figure for `test` in one run's tests (decode: its generation test), or null. */
export function llamaFigure(tests: readonly LlamaBenchTest[], test: ComparedTest): number | null {
  const hit =
    test.kind === 'decode'
      ? tests.find((t) => t.promptTokens === 0 && t.generatedTokens > 0)
      : tests.find((t) => t.generatedTokens === 0 && t.promptTokens === test.tokens);
  return hit?.tokensPerSecond ?? null;
}

export interface ComparisonRow {
  readonly dtype: string;
  /** llama.cpp's type for the same weights (F32, Q8_0, Q4_0). */
  readonly llamaType: string;
  readonly test: string;
  /** Tokens per second of every round, in order. */
  readonly capserve: readonly number[];
  readonly llama: readonly number[];
  /** Median of capserve's rounds over the median of llama.cpp's (> 1: capserve is faster). */
  readonly ratio: number;
}

export function comparisonRow(dtype: string, llamaType: string, test: ComparedTest, capserve: readonly number[], llama: readonly number[]): ComparisonRow {
  if (capserve.length === 0 || llama.length === 0) throw new Error(`${dtype} ${testLabel(test)}: no rounds to compare`);
  return { dtype, llamaType, test: testLabel(test), capserve, llama, ratio: median(capserve) / median(llama) };
}

export const LLAMA_TYPES: Readonly<Record<string, string>> = { fp32: 'F32', int8: 'Q8_0', int4: 'Q4_0' };

/** `fp32=PATH,int8=PATH`: the GGUF of each dtype to compare. */
export function parseGgufList(list: string): [WeightDtype, string][] {
  return list
    .split(',')
    .filter((s) => s.trim() !== '')
    .map((entry) => {
      const eq = entry.indexOf('=');
      const dtype = entry.slice(0, eq).trim();
      const path = entry.slice(eq + 1).trim();
      if (eq < 0 || !(dtype in LLAMA_TYPES) || path === '') throw new Error(`--gguf: expected fp32=PATH, int8=PATH or int4=PATH, got '${entry}'`);
      return [dtype as WeightDtype, path];
    });
}
