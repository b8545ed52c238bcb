/**
 * Decoding-time compression (kvpress's DecodingPress) is data: a policy's
 * `compressEvery: N` asks the engine to re-apply eviction every N decode steps,
 * so the cache oscillates between the budget and budget + N and generation can
 * run past any budget. The engine owns the step counter; this says when.
 */
export function shouldCompress(step: number, params: { readonly compressEvery: number }): boolean {
  return params.compressEvery > 0 && step > 0 && step % params.compressEvery === 0;
}
