/**
 * The context-compression methods, from easy to hard, for the registry to
 * list, and the pieces callers need (scorer, input and result types).
 */
import { llmlingua } from './llmlingua.js';
import { longllmlingua } from './longllmlingua.js';
import { selectiveContext } from './selective-context.js';
import type { CompressionMethod } from './types.js';

export const COMPRESSION_METHODS: readonly CompressionMethod[] = Object.freeze([selectiveContext, llmlingua, longllmlingua]);

export function getCompressionMethod(name: string): CompressionMethod | undefined {
  return COMPRESSION_METHODS.find((m) => m.method === name);
}

export { llmlingua, longllmlingua, selectiveContext };
export { selfInformation, tokenizerMismatch, type TokenScorer } from './scorer.js';
export { segmentPrompt } from './segments.js';
export {
  COMPRESSION_CAP,
  type CompressionInput,
  type CompressionMethod,
  type CompressionResult,
  type DroppedSpan,
  type PromptSegment,
  type SegmentRole,
} from './types.js';
