/** Token-array prompts for overflow tests: ids encode their position so what was dropped is visible. */
import type { PromptSegment, SegmentRole } from '../../../../src/policies/compression/types.js';

/** Segments of the given roles and lengths; token ids are consecutive from 0. */
export function prompt(...parts: [SegmentRole, number][]): PromptSegment[] {
  let next = 0;
  return parts.map(([role, n]) => ({ role, tokens: Array.from({ length: n }, () => next++) }));
}

/** [other 1][system 5][other 2][context 100][question 10][other 3] = 121 tokens. */
export function chat(): PromptSegment[] {
  return prompt(['other', 1], ['system', 5], ['other', 2], ['context', 100], ['question', 10], ['other', 3]);
}

export function range(from: number, to: number): number[] {
  return Array.from({ length: to - from }, (_, i) => from + i);
}
