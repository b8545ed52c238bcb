/**
 * How much of a decode step is the weights' matrix products, in its own process, for one weight
 * dtype: the model's linear layers alone (q/k/v, o, gate/up, down per layer and the vocabulary
 * projection, at the model's shapes, dtype, block size and accuracy level; random weights, since
 * only the kernels' time matters) chained in one graph with one row, against the served graph's
 * decode step of the real model, one after the other in this process (two live sessions would
 * spin against each other's thread pools). The difference is everything else a step costs:
 * attention, norms, RoPE, layout nodes, the variant switch and the binding. Prints one JSON line.
 */
import { parseArgs } from 'node:util';
import { defaultQuantBlockSize } from '../../src/model/compile/compile-model.js';
import type { WeightDtype } from '../../src/model/compile/decoder-graph.js';
import { quantizeBlockwise } from '../../src/model/compile/quantize.js';
import { loadCheckpoint } from '../../src/model/checkpoint.js';
import { attr, GraphBuilder } from '../../src/model/onnx/graph-builder.js';
import { timeGraphRuns } from '../../src/runtime/ceilings.js';
import type { ModelSpec } from '../../src/model/spec.js';
import { openTestModel } from '../helpers/session.js';
import { median } from './stats.js';

export interface DecodeFloorResult {
  readonly dtype: WeightDtype;
  /** Median decode step of the served graph (every variant, plain step), ms. */
  readonly decodeMs: number;
  /** Median run of the model's matrix products alone, ms. */
  readonly matmulFloorMs: number;
  /** decodeMs - matmulFloorMs. */
  readonly overheadMs: number;
}

/** The model's linear layers as one chain: each layer's products read the running row, their sum carries on. */
function matmulChain(spec: ModelSpec, dtype: WeightDtype): Uint8Array {
  const g = new GraphBuilder('matmul-floor');
  const h = spec.hiddenSize;
  const qkv = (spec.numHeads + 2 * spec.numKvHeads) * spec.headDim;
  const attnOut = spec.numHeads * spec.headDim;
  const inter = spec.intermediateSize;
  const block = defaultQuantBlockSize(dtype);
  let seed = 12345;
  const random = (n: number): Float32Array =>
    Float32Array.from({ length: n }, () => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return (seed / 2147483648 - 0.5) * 0.1;
    });
  const linear = (x: string, n: number, k: number): string => {
    const w = random(n * k);
    if (dtype === 'fp32') return g.op('Gemm', [x, g.constant('float32', [n, k], w)], { transB: attr.int(1) });
    const bits = dtype === 'int8' ? 8 : 4;
    const q = quantizeBlockwise(w, n, k, bits, block);
    return g.op(
      'MatMulNBits',
      [x, g.constant('uint8', [n, q.blocksPerRow, (block * bits) / 8], q.codes), g.constant('float32', [n * q.blocksPerRow], q.scales)],
      { K: attr.int(k), N: attr.int(n), bits: attr.int(bits), block_size: attr.int(block), accuracy_level: attr.int(4) },
      'com.microsoft',
    );
  };
  const first = (x: string, n: number): string => g.op('Slice', [x, g.int64s([0]), g.int64s([n]), g.int64s([1])]);
  let x = g.input('x', 'float32', [1, h]);
  for (let l = 0; l < spec.numLayers; l++) {
    const q = linear(x, qkv, h);
    const o = linear(attnOut <= qkv ? first(q, attnOut) : x, h, attnOut <= qkv ? attnOut : h);
    const gu = linear(x, 2 * inter, h);
    const down = linear(first(gu, inter), h, inter);
    x = g.op('Add', [o, down]);
  }
  g.node('Identity', [linear(x, spec.vocabSize, h)], {}, { outputs: ['y'] });
  g.output('y', 'float32', [1, spec.vocabSize]);
  return g.toModelBytes(17);
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      model: { type: 'string' },
      dtype: { type: 'string', default: 'int8' },
      steps: { type: 'string', default: '48' },
      threads: { type: 'string', default: '2' },
      'cache-dir': { type: 'string', default: '.cache/compiled' },
    },
  });
  if (!values.model) throw new Error('--model is required');
  const dtype = values.dtype as WeightDtype;
  const steps = Number(values.steps);
  const threads = Number(values.threads);
  const spec = loadCheckpoint(values.model).spec;

  const matmulFloorMs = await timeGraphRuns(
    matmulChain(spec, dtype),
    { name: 'x', data: Float32Array.from({ length: spec.hiddenSize }, (_, i) => Math.cos(i)), dims: [1, spec.hiddenSize] },
    threads,
    steps,
  );

  const m = await openTestModel(values.model, dtype, false, { threads, cacheDir: values['cache-dir'] });
  const V = m.checkpoint.spec.vocabSize;
  const { kv } = await m.prefill(
    Array.from({ length: 64 }, (_, i) => 10 + ((i * 41) % (V - 20))),
    false,
    steps + 8,
  );
  const decodeTimes: number[] = [];
  for (let s = 0; s < steps + 4; s++) {
    const inputs = m.inputs.decode([kv], [100 + s], [kv.nextPosition]);
    const t0 = performance.now();
    const out = await m.session.run(inputs);
    if (s >= 4) decodeTimes.push(performance.now() - t0);
    kv.append(out.presentKeys, out.presentValues, 0, 1, [kv.nextPosition]);
  }
  kv.release();
  await m.close();
  const decodeMs = median(decodeTimes);
  const result: DecodeFloorResult = { dtype, decodeMs, matmulFloorMs, overheadMs: decodeMs - matmulFloorMs };
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`decode-floor-bench: ${String(err)}\n`);
  process.exit(1);
});
