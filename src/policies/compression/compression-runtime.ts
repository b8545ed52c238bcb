/**
 * The runtime every context-compression method shares: before prefill it runs
 * the method over the request's role-tagged segments (or BOS + one context
 * segment) with the scorer model, and the kept tokens become the prompt; it
 * reports the ratio and the method's counts. Prefill and decode then run on
 * the plain graph like full attention. Also what the HTTP side must send.
 */
import type { ModelSpec } from '../../model/spec.js';
import type { PolicyParams, RequestNeeds } from '../method-types.js';
import { PlainRuntime, type BeforePrefillContext, type BeforePrefillResult, type RuntimeReport } from '../runtime.js';
import { isCompressible, resolveTarget } from './segments.js';
import type { CompressionMethod, CompressionResult, PromptSegment } from './types.js';

export class CompressionRuntime extends PlainRuntime {
  override readonly shrinksPrompt: boolean = true;
  override readonly prefixCacheBypass: string | null = 'context compression rewrites the prompt before prefill';
  private result: CompressionResult | null = null;
  private compressMs = 0;

  constructor(
    private readonly method: Pick<CompressionMethod, 'compress'>,
    private readonly params: PolicyParams,
    private readonly spec: ModelSpec,
  ) {
    super('context-compression');
  }

  override readonly beforePrefill = async (ctx: BeforePrefillContext): Promise<BeforePrefillResult> => {
    const t0 = performance.now();
    const prompt = ctx.prompt;
    const bos = this.spec.bosTokenId;
    const segments: readonly PromptSegment[] =
      ctx.segments ??
      (bos !== null && prompt[0] === bos
        ? [
            { role: 'other', tokens: [bos] },
            { role: 'context', tokens: prompt.slice(1) },
          ]
        : [{ role: 'context', tokens: prompt }]);
    const params = ctx.compressionRate !== undefined ? { ...this.params, rate: ctx.compressionRate } : this.params;
    const scorer = await ctx.scorer();
    try {
      this.result = await this.method.compress({ segments }, scorer, ctx.tokenizer, params);
    } finally {
      scorer.clearCache();
    }
    this.compressMs = performance.now() - t0;
    return { prompt: this.result.tokens, result: this.result };
  };

  override report(): RuntimeReport {
    const c = this.result;
    if (c === null) return super.report();
    return {
      promptTokens: c.originalTokens,
      compressionRatio: c.originalTokens > 0 ? c.compressedTokens / c.originalTokens : 1,
      attentionMassRetained: null,
      details: { ...c.details, originalTokens: c.originalTokens, compressedTokens: c.compressedTokens, compressMs: this.compressMs },
    };
  }
}

/** What a compression policy needs from the HTTP side: segments, and what it keeps and aims at. */
export function compressionRequestNeeds(params: PolicyParams): RequestNeeds {
  const roles = { compressSystem: params['compressSystem'] === true, compressQuestion: params['compressQuestion'] === true };
  const rate = params['rate'];
  return {
    segments: true,
    promptMayExceedWindow: true,
    shrink: {
      keeps: (role) => !isCompressible(role, roles),
      ownTarget: (total, compressible) => (typeof rate === 'number' ? resolveTarget(rate, total, compressible).targetTokens : Infinity),
    },
  };
}

/** A compression method with the shared runtime and request needs attached. */
export function defineCompression(def: Omit<CompressionMethod, 'instantiate' | 'request'>): CompressionMethod {
  return Object.freeze({
    ...def,
    instantiate: (params: PolicyParams, spec: ModelSpec) => new CompressionRuntime(def, params, spec),
    request: compressionRequestNeeds,
  });
}
