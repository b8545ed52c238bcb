/** Shared arithmetic of the overflow modes: the prompt budget, the protected head, and dropping a span. */
import type { PromptSegment } from '../compression/types.js';
import { ContextLengthExceededError } from './errors.js';
import type { OverflowInput, OverflowMode, OverflowReport, OverflowResult } from './types.js';

export function promptLength(segments: readonly PromptSegment[]): number {
  let n = 0;
  for (const s of segments) n += s.tokens.length;
  return n;
}

export function checkNumbers(input: OverflowInput): void {
  const { maxTokens, contextWindow } = input;
  if (!Number.isInteger(contextWindow) || contextWindow < 1) throw new RangeError(`overflow: contextWindow must be an integer >= 1, got ${contextWindow}`);
  if (!Number.isInteger(maxTokens) || maxTokens < 0) throw new RangeError(`overflow: maxTokens must be an integer >= 0, got ${maxTokens}`);
}

/** Tokens the prompt may take so that max_tokens still fit. */
export function promptBudget(input: OverflowInput): number {
  return input.contextWindow - input.maxTokens;
}

export function fits(input: OverflowInput): boolean {
  return promptLength(input.segments) <= promptBudget(input);
}

/** A budget no mode can work with: max_tokens alone fills the window. */
export function budgetOrThrow(input: OverflowInput, mode: OverflowMode): number {
  const budget = promptBudget(input);
  if (budget < 1) {
    throw new ContextLengthExceededError(
      promptLength(input.segments),
      input.maxTokens,
      input.contextWindow,
      `Overflow mode ${mode} cannot help: max_tokens alone fills the window.`,
    );
  }
  return budget;
}

/**
 * The tokens truncation keeps whatever happens: everything up to the end of
 * the last system segment plus the template segment right after it (the
 * system turn's end marker); without a system message, the leading template
 * segment (BOS and the like).
 */
export function protectedHead(segments: readonly PromptSegment[]): number {
  let lastSystem = -1;
  segments.forEach((s, i) => {
    if (s.role === 'system') lastSystem = i;
  });
  let end: number;
  if (lastSystem >= 0) end = segments[lastSystem + 1]?.role === 'other' ? lastSystem + 2 : lastSystem + 1;
  else end = segments[0]?.role === 'other' ? 1 : 0;
  let n = 0;
  for (let i = 0; i < end; i++) n += segments[i]?.tokens.length ?? 0;
  return n;
}

/** Keeps flat positions outside [from, from + count) and splits them back into the segments. */
export function dropRange(segments: readonly PromptSegment[], from: number, count: number): { segments: PromptSegment[]; tokens: number[] } {
  const out: PromptSegment[] = [];
  const tokens: number[] = [];
  let p = 0;
  for (const s of segments) {
    const kept: number[] = [];
    for (const t of s.tokens) {
      if (p < from || p >= from + count) kept.push(t);
      p++;
    }
    out.push({ role: s.role, tokens: kept });
    for (const t of kept) tokens.push(t);
  }
  return { segments: out, tokens };
}

export function unchanged(input: OverflowInput, mode: OverflowMode, detail: Readonly<Record<string, number | string>> = {}): OverflowResult {
  const tokens: number[] = [];
  for (const s of input.segments) for (const t of s.tokens) tokens.push(t);
  return {
    segments: input.segments.map((s) => ({ role: s.role, tokens: [...s.tokens] })),
    tokens,
    report: report(input, mode, false, tokens.length, detail),
    compression: null,
    evictPolicy: null,
  };
}

export function report(
  input: OverflowInput,
  mode: OverflowMode,
  applied: boolean,
  tokensAfter: number,
  detail: Readonly<Record<string, number | string>>,
): OverflowReport {
  const before = promptLength(input.segments);
  return {
    mode,
    applied,
    tokensBefore: before,
    tokensAfter,
    dropped: before - tokensAfter,
    contextWindow: input.contextWindow,
    maxTokens: input.maxTokens,
    detail,
  };
}
