/** Teacher-forced scoring: per-position log-probabilities gathered from prefill logits. */
import type { PolicyReport } from '../policies/types.js';
import { logSoftmaxRow, logSumExp } from './log-softmax.js';
import type { Sequence } from './sequence.js';
import type { ScoreResult } from './types.js';

/** Folds one prefill chunk's logits (positions offset..offset+count-1) into the sequence's scores. */
export function collectScores(seq: Sequence, logits: Float32Array, offset: number, count: number, vocabSize: number): void {
  const req = seq.scoring;
  if (!req) return;
  const V = vocabSize;
  for (let t = 0; t < count; t++) {
    const g = offset + t;
    if (g < req.from || g + 1 >= req.tokens.length) continue;
    const logitsRow = logits.subarray(t * V, (t + 1) * V);
    const target = req.tokens[g + 1] ?? 0;
    if (req.mode === 'rows') {
      const row = logSoftmaxRow(logitsRow);
      seq.scoredTargets.push(row[target] ?? NaN);
      seq.scoredRows.push(row);
    } else seq.scoredTargets.push((logitsRow[target] ?? NaN) - logSumExp(logitsRow));
  }
}

export function scoreResult(seq: Sequence, vocabSize: number, policy: PolicyReport): ScoreResult {
  let rows: Float32Array | null = null;
  if (seq.scoring?.mode === 'rows') {
    const out = new Float32Array(seq.scoredRows.length * vocabSize);
    seq.scoredRows.forEach((r, i) => out.set(r, i * vocabSize));
    rows = out;
  }
  return { targetLogprobs: Float32Array.from(seq.scoredTargets), rows, vocabSize, policy };
}
