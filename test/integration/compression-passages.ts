/**
 * The fidelity measure for context compression, shared by the proof test and
 * the benchmark. A passage is a paragraph of TinyStories (paragraphs and
 * stories are separated by blank lines): its first sentences (up to six,
 * at least three) are the context, the next sentence is the target. Only the
 * context is compressed; fidelity is the target's mean per-token NLL given
 * BOS + the compressed context, lower is better. The baseline drops the same
 * number of context tokens uniformly at random.
 */
import { readFileSync } from 'node:fs';
import { Rng } from '../../src/model/create/prng.js';
import type { TextTokenizer } from '../../src/model/tokenizer-types.js';
import type { PolicyParams } from '../../src/policies/method-types.js';
import type { TokenScorer } from '../../src/policies/compression/scorer.js';
import type { CompressionMethod } from '../../src/policies/compression/types.js';

export interface Passage {
  readonly context: readonly number[];
  readonly target: readonly number[];
}

const SENTENCE_SPLIT = /(?<=[.!?]["'”’]?)\s+/;

export function loadPassages(file: string, tokenizer: TextTokenizer, count: number, seed: number): Passage[] {
  const all: Passage[] = [];
  for (const block of readFileSync(file, 'utf8').split(/\n\s*\n/)) {
    const sentences = block
      .trim()
      .split(SENTENCE_SPLIT)
      .filter((s) => s.length > 0);
    if (sentences.length < 4) continue;
    const m = Math.min(sentences.length - 1, 6);
    const context = tokenizer.encode(sentences.slice(0, m).join(' '), { addSpecialTokens: false });
    const target = tokenizer.encode(sentences[m] ?? '', { addSpecialTokens: false });
    if (target.length > 0) all.push({ context, target });
  }
  const rng = new Rng(seed);
  for (let i = all.length - 1; i > 0; i--) {
    const j = Math.floor(rng.uniform() * (i + 1));
    const a = all[i];
    const b = all[j];
    if (a !== undefined && b !== undefined) {
      all[i] = b;
      all[j] = a;
    }
  }
  if (all.length < count) throw new Error(`${file} holds ${all.length} passages, ${count} asked`);
  return all.slice(0, count);
}

/** Mean NLL (nats per token) of `target` after BOS + `context`. */
export async function targetNll(scorer: TokenScorer, bos: number, context: readonly number[], target: readonly number[]): Promise<number> {
  const seq = [bos, ...context, ...target];
  const lp = await scorer.logprobs(seq);
  let sum = 0;
  for (let i = seq.length - target.length; i < seq.length; i++) sum -= lp[i] ?? Number.NaN;
  return sum / target.length;
}

/** Keeps `keep` tokens of `tokens` chosen uniformly at random, in order. */
export function randomKeep(tokens: readonly number[], keep: number, rng: Rng): number[] {
  const idx = tokens.map((_, i) => i);
  for (let i = idx.length - 1; i > 0; i--) {
    const j = Math.floor(rng.uniform() * (i + 1));
    const a = idx[i] ?? 0;
    idx[i] = idx[j] ?? 0;
    idx[j] = a;
  }
  const chosen = new Uint8Array(tokens.length);
  for (let k = 0; k < keep; k++) chosen[idx[k] ?? 0] = 1;
  return tokens.filter((_, i) => chosen[i] === 1);
}

export interface FidelityResult {
  readonly rate: number;
  readonly passages: number;
  /** Mean target NLL with the whole context. */
  readonly full: number;
  readonly method: number;
  /** Same kept counts, tokens chosen at random (mean over draws). */
  readonly random: number;
  /** Share of passages where the method's NLL is below the random draws' mean. */
  readonly winRate: number;
  /** Mean kept / original over the contexts. */
  readonly keptRatio: number;
}

export async function measureFidelity(
  method: CompressionMethod,
  params: PolicyParams,
  passages: readonly Passage[],
  scorer: TokenScorer,
  tokenizer: TextTokenizer,
  bos: number,
  seed: number,
  randomDraws = 3,
): Promise<FidelityResult> {
  const rng = new Rng(seed);
  let full = 0;
  let ours = 0;
  let random = 0;
  let wins = 0;
  let kept = 0;
  for (const p of passages) {
    const r = await method.compress(
      {
        segments: [
          { role: 'other', tokens: [bos] },
          { role: 'context', tokens: p.context },
        ],
      },
      scorer,
      tokenizer,
      params,
    );
    const compressed = r.segments[1]?.tokens ?? [];
    full += await targetNll(scorer, bos, p.context, p.target);
    const mine = await targetNll(scorer, bos, compressed, p.target);
    let chance = 0;
    for (let d = 0; d < randomDraws; d++) chance += await targetNll(scorer, bos, randomKeep(p.context, compressed.length, rng), p.target);
    chance /= randomDraws;
    ours += mine;
    random += chance;
    if (mine < chance) wins++;
    kept += compressed.length / p.context.length;
  }
  const n = passages.length;
  return { rate: Number(params['rate']), passages: n, full: full / n, method: ours / n, random: random / n, winRate: wins / n, keptRatio: kept / n };
}
