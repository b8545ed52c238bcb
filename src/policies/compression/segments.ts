/**
 * Shared handling of a compression input: validation, the flat view of the
 * prompt, which roles a method may touch, the token target a rate resolves
 * to, and the result built from a keep mask.
 */
import { Type, type Static, type TObject } from '@sinclair/typebox';
import { BudgetSchema, type Budget } from '../budget.js';
import { PolicyError } from '../errors.js';
import type { TextTokenizer } from '../../model/tokenizer-types.js';
import { SEGMENT_ROLES, type CompressionInput, type CompressionResult, type DroppedSpan, type PromptSegment, type SegmentRole } from './types.js';

/** Params every compression method has. */
export const CommonCompressionParams = {
  rate: BudgetSchema(
    0.5,
    'How much to keep. A ratio keeps that share of the compressible tokens (kept / original, over the roles the method may touch); a token count is the target for the whole compressed prompt, protected parts included.',
  ),
  compressSystem: Type.Boolean({ default: false, description: 'Also compress the system message (kept whole by default).' }),
  compressQuestion: Type.Boolean({ default: false, description: 'Also compress the last user message (kept whole by default).' }),
};

export type CommonParams = Static<TObject<typeof CommonCompressionParams>>;

/** Throws a RangeError naming the first bad position. */
export function checkTokenIds(tokens: readonly number[], vocabSize: number, who: string): void {
  for (let i = 0; i < tokens.length; i++) {
    const id = tokens[i];
    if (id === undefined || !Number.isInteger(id) || id < 0 || id >= vocabSize) {
      throw new RangeError(`${who}: token ${i} is ${String(id)}, expected an integer id in [0, ${vocabSize})`);
    }
  }
}

export function checkInput(input: CompressionInput, vocabSize: number, method: string): void {
  const segments: unknown = input.segments; // a caller's JSON may not match the type
  if (!Array.isArray(segments)) throw new PolicyError(`${method}: input.segments must be an array`);
  input.segments.forEach((s, i) => {
    if (!SEGMENT_ROLES.includes(s.role)) {
      throw new PolicyError(`${method}: segment ${i} has role ${JSON.stringify(s.role)}, expected one of ${SEGMENT_ROLES.join(', ')}`);
    }
    checkTokenIds(s.tokens, vocabSize, `${method}: segment ${i} (${s.role})`);
  });
}

/** The prompt as one token array with, per position, its segment and whether the method may drop it. */
export interface FlatPrompt {
  readonly tokens: number[];
  readonly segmentOf: Int32Array;
  /** Index within the segment. */
  readonly offsetOf: Int32Array;
  readonly compressible: Uint8Array;
  /** Start of each segment in `tokens`. */
  readonly segmentStart: Int32Array;
  readonly compressibleCount: number;
}

export function isCompressible(role: SegmentRole, params: Pick<CommonParams, 'compressSystem' | 'compressQuestion'>): boolean {
  switch (role) {
    case 'context':
      return true;
    case 'system':
      return params.compressSystem;
    case 'question':
      return params.compressQuestion;
    case 'other':
      return false;
  }
}

export function flatten(input: CompressionInput, params: Pick<CommonParams, 'compressSystem' | 'compressQuestion'>): FlatPrompt {
  let n = 0;
  for (const s of input.segments) n += s.tokens.length;
  const tokens = new Array<number>(n);
  const segmentOf = new Int32Array(n);
  const offsetOf = new Int32Array(n);
  const compressible = new Uint8Array(n);
  const segmentStart = new Int32Array(input.segments.length);
  let p = 0;
  let compressibleCount = 0;
  input.segments.forEach((s, si) => {
    segmentStart[si] = p;
    const c = isCompressible(s.role, params) ? 1 : 0;
    for (let i = 0; i < s.tokens.length; i++, p++) {
      tokens[p] = s.tokens[i] ?? 0;
      segmentOf[p] = si;
      offsetOf[p] = i;
      compressible[p] = c;
    }
    compressibleCount += c * s.tokens.length;
  });
  return { tokens, segmentOf, offsetOf, compressible, segmentStart, compressibleCount };
}

export interface Target {
  /** The whole prompt's token target. */
  readonly targetTokens: number;
  /** Compressible tokens to keep (0..compressibleCount). */
  readonly keep: number;
}

/**
 * A ratio keeps floor(rate * compressible) of the compressible tokens (at
 * least one when there are any); a token count is the whole prompt's target,
 * so the compressible part gets what the protected part leaves (possibly 0,
 * and then the target is not reachable: the result says so by exceeding it).
 */
export function resolveTarget(rate: Budget, totalTokens: number, compressibleTokens: number): Target {
  const protectedTokens = totalTokens - compressibleTokens;
  if (!(rate > 0) || (rate > 1 && !Number.isInteger(rate))) {
    throw new PolicyError(`compression rate must be a ratio in (0, 1] or a token count (an integer >= 1), got ${rate}`);
  }
  if (rate <= 1) {
    const keep = compressibleTokens === 0 ? 0 : Math.min(compressibleTokens, Math.max(1, Math.floor(rate * compressibleTokens + 1e-9)));
    return { targetTokens: protectedTokens + keep, keep };
  }
  const keep = Math.max(0, Math.min(compressibleTokens, rate - protectedTokens));
  return { targetTokens: rate, keep };
}

/**
 * Builds the result from a keep mask over the flat prompt. `order`, when
 * given, lists per segment the kept offsets in output order (a method that
 * reorders documents); otherwise kept tokens stay in place.
 */
export function buildResult(
  method: string,
  input: CompressionInput,
  flat: FlatPrompt,
  keep: Uint8Array,
  target: Target,
  tokenizer: TextTokenizer,
  details: Readonly<Record<string, number | string>>,
  order?: readonly (readonly number[] | null)[],
): CompressionResult {
  const segments: PromptSegment[] = [];
  const dropped: DroppedSpan[] = [];
  const all: number[] = [];
  input.segments.forEach((s, si) => {
    const base = flat.segmentStart[si] ?? 0;
    const kept: number[] = [];
    const explicit = order?.[si] ?? null;
    if (explicit !== null) {
      for (const off of explicit) kept.push(s.tokens[off] ?? 0);
    } else {
      for (let i = 0; i < s.tokens.length; i++) if (keep[base + i] === 1) kept.push(s.tokens[i] ?? 0);
    }
    let i = 0;
    while (i < s.tokens.length) {
      if (keep[base + i] === 1) {
        i++;
        continue;
      }
      let j = i;
      while (j < s.tokens.length && keep[base + j] !== 1) j++;
      const ids = s.tokens.slice(i, j);
      dropped.push({ segment: si, start: i, end: j, tokens: ids, text: tokenizer.decode(ids) });
      i = j;
    }
    segments.push({ role: s.role, tokens: kept });
    for (const t of kept) all.push(t);
  });
  return {
    method,
    segments,
    tokens: all,
    originalTokens: flat.tokens.length,
    compressedTokens: all.length,
    targetTokens: target.targetTokens,
    compressibleTokens: flat.compressibleCount,
    dropped,
    details,
  };
}

/** The result of a method that had nothing to do (no compressible tokens, or the target already met). */
export function keepAll(
  method: string,
  input: CompressionInput,
  flat: FlatPrompt,
  target: Target,
  tokenizer: TextTokenizer,
  details: Readonly<Record<string, number | string>>,
): CompressionResult {
  return buildResult(method, input, flat, new Uint8Array(flat.tokens.length).fill(1), target, tokenizer, details);
}

/**
 * Tokenizes prompt parts separately into segments (no special tokens added):
 * a convenience for callers that hold text per role. Tokenizing parts apart
 * can split differently at the seams than tokenizing the joined text.
 */
export function segmentPrompt(parts: readonly { readonly role: SegmentRole; readonly text: string }[], tokenizer: TextTokenizer): PromptSegment[] {
  return parts.map((p) => ({ role: p.role, tokens: p.text === '' ? [] : tokenizer.encode(p.text, { addSpecialTokens: false }) }));
}
