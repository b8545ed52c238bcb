/** The report's section setting capserve beside llama.cpp on the same weights (llama-cpp-bench.ts), when the run was given llama-bench and GGUFs. */
import type { LlamaCppBenchResult } from './llama-cpp-bench.js';
import { f, ok } from './run-helpers.js';

/** Why the comparison did not run, or its result (or the error it met). */
export type LlamaCppOutcome = LlamaCppBenchResult | { error: string } | { skipped: string };

export function llamaCppSection(outcome: LlamaCppOutcome): string[] {
  const lines = ['## Against llama.cpp (same weights, same run)', ''];
  if ('skipped' in outcome) return [...lines, `Not run: ${outcome.skipped}.`, ''];
  if (!ok(outcome)) return [...lines, `llama.cpp comparison failed: ${outcome.error}`, ''];
  return [
    ...lines,
    `llama-bench (\`${outcome.llamaBench}\`, build ${outcome.llamaBuild}) and capserve on the bench model's weights, ${outcome.threads} threads, taking turns dtype by dtype, ${outcome.rounds} rounds; ` +
      `capserve's figures are its compiled graph in process (batch-1 decode steps after a 16-token prompt, prefills in passes of the engine's chunk), llama-bench's its own (decode: ${outcome.generatedTokens} generated tokens). Ratio: median of capserve's rounds over median of llama.cpp's (> 1: capserve is faster).`,
    '',
    '| capserve dtype | llama.cpp type | test | capserve tok/s (rounds) | llama.cpp tok/s (rounds) | ratio |',
    '|---|---|---|---|---|---|',
    ...outcome.rows.map(
      (r) =>
        `| ${r.dtype} | ${r.llamaType} | ${r.test} | ${r.capserve.map((x) => f(x)).join(', ')} | ${r.llama.map((x) => f(x)).join(', ')} | ${f(r.ratio, 2)} |`,
    ),
    '',
  ];
}
