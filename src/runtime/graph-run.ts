/**
 * One run of a small serialized graph with float32 inputs, in a session of its own released
 * before returning: for checking a graph fragment (e.g. the w8a8 linear) against an emulation.
 */
import * as ort from 'onnxruntime-node';

export interface Float32Feed {
  readonly data: Float32Array;
  readonly dims: readonly number[];
}

export async function runGraphOnce(model: Uint8Array, feeds: Readonly<Record<string, Float32Feed>>, output: string, threads = 1): Promise<Float32Array> {
  const session = await ort.InferenceSession.create(model, { graphOptimizationLevel: 'all', intraOpNumThreads: threads });
  try {
    const inputs: Record<string, ort.Tensor> = {};
    for (const [name, f] of Object.entries(feeds)) inputs[name] = new ort.Tensor('float32', f.data, [...f.dims]);
    const res = await session.run(inputs);
    const y = res[output];
    if (y === undefined || !(y.data instanceof Float32Array)) throw new Error(`the graph has no float32 output ${output}`);
    return y.data;
  } finally {
    await session.release();
  }
}
