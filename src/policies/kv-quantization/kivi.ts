// KIVI (Liu et al. 2024, "KIVI: A Tuning-Free Asymmetric 2bit Quantization for KV Cache", ICML; github.com/jy-yuan/KIVI): keys quantized per channel in groups of groupSize tokens, values per token, asymmetric b-bit codes (scale and zero point), the newest residual tokens in full precision.
import { Type, type Static } from '@sinclair/typebox';
import type { SequenceKv } from '../../kv/sequence-kv.js';
import type { ModelSpec } from '../../model/spec.js';
import { PLAIN_REQUEST, typedParams, type KvQuantizationMethod, type PolicyParams } from '../method-types.js';
import { PlainRuntime, type PassResult, type RuntimeReport } from '../runtime.js';
import { advanceLayer, KiviLayerState, packedBytesPerEntry, type KiviConfig } from './kivi-quantizer.js';

export const KiviParams = Type.Object(
  {
    bits: Type.Union([Type.Literal(8), Type.Literal(4), Type.Literal(2)], { default: 4, description: 'Code width of keys and values (KIVI: 2 or 4).' }),
    groupSize: Type.Integer({ minimum: 1, maximum: 1024, default: 32, description: 'Tokens sharing one key scale and zero point per channel (KIVI: 32).' }),
    residual: Type.Integer({
      minimum: 0,
      maximum: 65536,
      default: 128,
      description: 'Newest tokens kept in full precision (KIVI: 128); keys leave it a whole group at a time.',
    }),
  },
  { additionalProperties: false },
);
export type KiviParams = Static<typeof KiviParams>;

/**
 * One sequence's KIVI runtime: the plain graph over the whole cache; after
 * every pass, the entries that left the residual are quantized in place.
 */
export class KiviRuntime extends PlainRuntime {
  override readonly prefixCacheBypass: string | null = 'kivi rewrites cached entries with their quantized values, so its prefix KV is not full attention';
  private readonly layers: KiviLayerState[];
  private readonly config: KiviConfig;
  private keyEntries = 0;
  private valueEntries = 0;
  private cached = 0;

  constructor(
    params: KiviParams,
    private readonly spec: ModelSpec,
  ) {
    super('kv-quantization');
    this.config = { bits: params.bits, groupSize: params.groupSize, residual: params.residual };
    this.layers = Array.from({ length: spec.numLayers }, () => new KiviLayerState());
  }

  override afterPass(kv: SequenceKv, _pass: PassResult): void {
    let cached = 0;
    for (let l = 0; l < this.spec.numLayers; l++) {
      const state = this.layers[l];
      if (!state) continue;
      const length = kv.length(l);
      if (length < state.keysQuantized || length < state.valuesQuantized) throw new Error('kivi: the cache shrank under KIVI (KIVI never evicts)');
      const keysFrom = state.keysQuantized;
      const valuesFrom = state.valuesQuantized;
      const done = advanceLayer(
        state,
        kv.keyBuffer(l),
        kv.valueBuffer(l),
        { heads: this.spec.numKvHeads, headDim: this.spec.headDim, capacity: kv.capacity(l), length },
        this.config,
      );
      // Quantized in place: a gathered copy of these entries is stale.
      if (done.keys > 0 || done.values > 0) kv.markRewritten(l, Math.min(done.keys > 0 ? keysFrom : Infinity, done.values > 0 ? valuesFrom : Infinity));
      this.keyEntries += done.keys;
      this.valueEntries += done.values;
      cached += length;
    }
    this.cached = cached;
  }

  override report(): RuntimeReport {
    const { bits, groupSize, residual } = this.config;
    const packed = packedBytesPerEntry(this.spec.headDim, this.config);
    const fp32 = 2 * this.spec.headDim * 4;
    return {
      ...super.report(),
      details: {
        bits,
        groupSize,
        residual,
        // Summed over layers: cached entries, and how many of their keys and values are quantized.
        cachedEntries: this.cached,
        quantizedKeyEntries: this.keyEntries,
        quantizedValueEntries: this.valueEntries,
        // Computed, not allocated: the cache holds the dequantized values in the engine's KV dtype.
        packedBytesPerToken: packed * this.spec.numLayers * this.spec.numKvHeads,
        packedRatioVsFp32: packed / fp32,
      },
    };
  }
}

export const kivi: KvQuantizationMethod = Object.freeze({
  method: 'kivi',
  kind: 'kv-quantization' as const,
  rule: 'Quantize keys per channel in groups of groupSize tokens and values per token to bits-bit asymmetric codes, keeping the newest residual tokens in full precision.',
  // Fewer bits per cached token (C) at full-context latency (P); pays with quantization error (A).
  cap: Object.freeze({ favors: Object.freeze(['C', 'P'] as const), costs: 'A' as const }),
  schema: KiviParams,
  needs: () => ({ accumulatedAttention: false, observationWindow: 0, lastQueryAttention: false, query: false }),
  check: () => [],
  instantiate: (params: PolicyParams, spec: ModelSpec) => new KiviRuntime(typedParams(KiviParams, params), spec),
  request: () => PLAIN_REQUEST,
});
