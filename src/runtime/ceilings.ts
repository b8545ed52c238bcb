/**
 * The machine's ceilings, measured through onnxruntime itself so the engine's
 * numbers compare against what the same runtime can reach: memory read
 * bandwidth (a reduction over a buffer far larger than the caches) and fp32
 * GEMM throughput (a large square MatMul).
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { attr, GraphBuilder } from '../model/onnx/graph-builder.js';

export interface Ceilings {
  /** GB/s (1e9 bytes) read by ReduceSum over 256 MiB. */
  readonly readBandwidthGBs: number;
  /** GFLOP/s of a 2048^3 fp32 MatMul. */
  readonly gemmGflops: number;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? NaN;
}

async function timeRuns(session: ort.InferenceSession, feeds: Record<string, ort.Tensor>, runs: number): Promise<number> {
  await session.run(feeds);
  const t: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    await session.run(feeds);
    t.push(performance.now() - t0);
  }
  return median(t);
}

export async function measureCeilings(workDir: string, threads: number): Promise<Ceilings> {
  const opts: ort.InferenceSession.SessionOptions = { intraOpNumThreads: threads, graphOptimizationLevel: 'all' };
  // Bandwidth: ReduceSum of a [rows, 1024] input read once per run.
  const rows = 64 * 1024;
  const g1 = new GraphBuilder('bandwidth');
  const x = g1.input('x', 'float32', [rows, 1024]);
  g1.node('ReduceSum', [x, g1.int64s([1])], { keepdims: attr.int(0) }, { outputs: ['y'] });
  g1.output('y', 'float32', [rows]);
  const p1 = join(workDir, 'ceiling-bandwidth.onnx');
  writeFileSync(p1, g1.toModelBytes(17));
  const s1 = await ort.InferenceSession.create(p1, opts);
  const data = new Float32Array(rows * 1024).fill(1);
  // The best of repeated medians: a ceiling is what the machine can reach, not its average.
  let ms1 = Infinity;
  for (let r = 0; r < 3; r++) ms1 = Math.min(ms1, await timeRuns(s1, { x: new ort.Tensor('float32', data, [rows, 1024]) }, 9));
  await s1.release();
  // GEMM: [N, N] x [N, N].
  const N = 2048;
  const g2 = new GraphBuilder('gemm');
  const a = g2.input('a', 'float32', [N, N]);
  const b = g2.input('b', 'float32', [N, N]);
  g2.node('MatMul', [a, b], {}, { outputs: ['c'] });
  g2.output('c', 'float32', [N, N]);
  const p2 = join(workDir, 'ceiling-gemm.onnx');
  writeFileSync(p2, g2.toModelBytes(17));
  const s2 = await ort.InferenceSession.create(p2, opts);
  const m = new Float32Array(N * N).map((_, i) => (i % 7) * 0.01);
  let ms2 = Infinity;
  for (let r = 0; r < 3; r++) ms2 = Math.min(ms2, await timeRuns(s2, { a: new ort.Tensor('float32', m, [N, N]), b: new ort.Tensor('float32', m, [N, N]) }, 9));
  await s2.release();
  return { readBandwidthGBs: data.byteLength / 1e9 / (ms1 / 1000), gemmGflops: (2 * N * N * N) / 1e9 / (ms2 / 1000) };
}

/**
 * Median milliseconds of one run of a serialized graph with a single float32 input (after one
 * warm-up run), in a session of its own, released before returning: the bench's matrix-product
 * floor of a decode step (decode-floor-bench) is timed this way.
 */
export async function timeGraphRuns(
  model: Uint8Array,
  input: { name: string; data: Float32Array; dims: number[] },
  threads: number,
  runs: number,
): Promise<number> {
  const session = await ort.InferenceSession.create(model, { intraOpNumThreads: threads, graphOptimizationLevel: 'all' });
  try {
    await session.run({ [input.name]: new ort.Tensor('float32', input.data, input.dims) });
    return await timeRuns(session, { [input.name]: new ort.Tensor('float32', input.data, input.dims) }, runs);
  } finally {
    await session.release();
  }
}
