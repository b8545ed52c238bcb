/**
 * `echo` with `logprobs` on /v1/completions: the prompt's own tokens as legacy
 * logprobs entries, as OpenAI's legacy API and vLLM (prompt_logprobs) give them;
 * what lm-evaluation-harness reads for loglikelihood and perplexity. Values come
 * from the engine's teacher-forced scoring (EngineClient.score, the policy that
 * serves the request); the first token has nothing predicting it, so its logprob
 * and top_logprobs are null. Strings are decoded in context like generated
 * tokens' (model/token-text.ts), so each `tokens` entry is a key of its own
 * top_logprobs whenever it is among the top alternatives.
 */
import type { EngineClient } from '../engine/types.js';
import { TOKEN_CONTEXT, visibleTextAfter } from '../model/token-text.js';
import type { Policy } from '../policies/registry.js';
import { appendLegacyLogprob, emptyLegacyLogprobs, type LegacyLogprobs } from './logprobs.js';

/** The `topN` best entries of a log-softmax row (logprob descending, ties by lowest id). */
function topOf(row: Float32Array, topN: number): { id: number; logprob: number }[] {
  const best: { id: number; logprob: number }[] = [];
  for (let id = 0; id < row.length; id++) {
    const v = row[id] ?? -Infinity;
    if (v === -Infinity || (best.length === topN && v <= (best[topN - 1]?.logprob ?? -Infinity))) continue;
    let at = best.length;
    while (at > 0 && (best[at - 1]?.logprob ?? -Infinity) < v) at--;
    best.splice(at, 0, { id, logprob: v });
    if (best.length > topN) best.pop();
  }
  return best;
}

export interface PromptLogprobsInput {
  readonly id: string;
  readonly tokens: readonly number[];
  /** Alternatives per position, as the request's `logprobs`. */
  readonly topN: number;
  readonly policy: Policy;
}

/** The echoed prompt's logprobs; text_offset counts from the start of the decoded prompt. */
export async function promptLogprobs(engine: EngineClient, input: PromptLogprobsInput, signal: AbortSignal): Promise<LegacyLogprobs> {
  const { tokens, topN, policy } = input;
  let targets: Float32Array | null = null;
  let rows: Float32Array | null = null;
  let V = 0;
  if (tokens.length >= 2) {
    // Compression would score a different prompt than the one echoed; every other policy scores as it serves.
    const scoresAs = policy.kind !== 'none' && policy.kind !== 'context-compression' ? { servingPolicy: policy } : {};
    const result = await engine.score(
      { id: `${input.id}-prompt`, tokens, policy: policy.name, ...scoresAs, from: 0, mode: topN > 0 ? 'rows' : 'target' },
      signal,
    );
    targets = result.targetLogprobs;
    rows = result.rows;
    V = result.vocabSize;
  }
  const out = emptyLegacyLogprobs();
  let offset = 0;
  for (let i = 0; i < tokens.length; i++) {
    const id = tokens[i] ?? 0;
    const context = tokens.slice(Math.max(0, i - TOKEN_CONTEXT), i);
    if (i === 0 || targets === null) {
      appendLegacyLogprob(out, { text: engine.tokenTexts(context, [id])[0] ?? '', logprob: null, top: null }, offset);
    } else {
      const logprob = targets[i - 1] ?? 0;
      const row = rows === null ? null : rows.subarray((i - 1) * V, i * V);
      const alternatives = row === null ? [] : topOf(row, topN);
      // One call for the token and its alternatives, so their strings are kept distinct together.
      const [text = '', ...altTexts] = engine.tokenTexts(context, [id, ...alternatives.map((t) => t.id)]);
      appendLegacyLogprob(out, { text, logprob, top: alternatives.map((t, j) => ({ text: altTexts[j] ?? '', logprob: t.logprob })) }, offset);
    }
    offset += (await visibleTextAfter((ids) => engine.detokenize(ids), context, id)).length;
  }
  return out;
}

/** Appends `more` (a generated choice's logprobs) to `into`, its offsets shifted by `by`. */
export function concatLegacyLogprobs(into: LegacyLogprobs, more: LegacyLogprobs, by: number): LegacyLogprobs {
  return {
    tokens: [...into.tokens, ...more.tokens],
    token_logprobs: [...into.token_logprobs, ...more.token_logprobs],
    top_logprobs: [...into.top_logprobs, ...more.top_logprobs],
    text_offset: [...into.text_offset, ...more.text_offset.map((o) => o + by)],
  };
}
