/**
 * Context compression of one sequence's prompt before prefill: the request's
 * role-tagged segments (or BOS + one context segment) through the policy's
 * method; the kept tokens become the prompt, and a result that still does not
 * fit the window is an error stating both numbers.
 */
import type { ModelSpec } from '../model/spec.js';
import type { TextTokenizer } from '../model/tokenizer-types.js';
import { getCompressionMethod } from '../policies/compression/index.js';
import type { TokenScorer } from '../policies/compression/scorer.js';
import type { PromptSegment } from '../policies/compression/types.js';
import { EngineError } from './errors.js';
import type { Sequence } from './sequence.js';

export async function compressPrompt(seq: Sequence, scorer: TokenScorer & { clearCache(): void }, tokenizer: TextTokenizer, spec: ModelSpec, contextLength: number): Promise<void> {
  const policy = seq.request.servingPolicy;
  const method = policy ? getCompressionMethod(policy.method) : undefined;
  if (!policy || !method) throw new EngineError('invalid_request', `policy ${seq.request.policy} is not a context-compression policy`);
  const t0 = performance.now();
  const prompt = seq.request.promptTokens;
  const bos = spec.bosTokenId;
  const segments: readonly PromptSegment[] =
    seq.request.segments ??
    (bos !== null && prompt[0] === bos
      ? [
          { role: 'other', tokens: [bos] },
          { role: 'context', tokens: prompt.slice(1) },
        ]
      : [{ role: 'context', tokens: prompt }]);
  const params = seq.request.compressionRate !== undefined ? { ...policy.params, rate: seq.request.compressionRate } : policy.params;
  try {
    seq.compression = await method.compress({ segments }, scorer, tokenizer, params);
  } finally {
    scorer.clearCache();
  }
  seq.compressMs = performance.now() - t0;
  seq.prompt = seq.compression.tokens;
  if (seq.prompt.length === 0) throw new EngineError('invalid_request', 'context compression left an empty prompt', { param: 'cap.policy' });
  if (seq.prompt.length >= contextLength) {
    throw new EngineError(
      'context_length_exceeded',
      `This model's maximum context length is ${contextLength} tokens. Your prompt of ${prompt.length} tokens was compressed to ${seq.prompt.length} tokens by ${policy.name}, which still leaves no room to generate.`,
      { param: 'messages' },
    );
  }
}
