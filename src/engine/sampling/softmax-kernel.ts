/**
 * The vocabulary-wide passes of sampling in WebAssembly SIMD (softmax-kernel.wat):
 * the largest logit, and every token's weight exp((logit - max) / T) with their sum.
 * In JavaScript these passes cost about 0.65 ms per token at a 49K vocabulary
 * (4.7 ns a token for the exponential alone): at 32 sequences, about 20 ms of each
 * decode step. Weights are float32 (the logits' own precision; relative error
 * under 1e-7), summed in float64.
 *
 * One kernel per vocabulary size and thread (see scratch.ts): its memory holds the
 * logits being sampled (`logits`, the sampler's working copy) and the weights.
 */
import { SOFTMAX_KERNEL_WASM } from './softmax-kernel-bytes.js';

/** The part of the WebAssembly JS API used here (the Node typings in use do not declare it). */
interface WasmMemory {
  readonly buffer: ArrayBuffer;
  grow(pages: number): number;
}
interface WasmApi {
  readonly Module: new (bytes: Uint8Array) => object;
  readonly Instance: new (module: object, imports: object) => { readonly exports: Readonly<Record<string, unknown>> };
  readonly Memory: abstract new (...args: never[]) => WasmMemory;
}
const wasm = (globalThis as unknown as { readonly WebAssembly: WasmApi }).WebAssembly;

interface KernelExports {
  readonly memory: WasmMemory;
  readonly max: (n4: number) => number;
  readonly expWeights: (n4: number, weightsOffset: number, max: number, invT: number) => number;
}

const PAGE_BYTES = 65536;
let compiled: object | null = null;

function instantiate(): KernelExports {
  compiled ??= new wasm.Module(Buffer.from(SOFTMAX_KERNEL_WASM, 'base64'));
  const { memory, max, expWeights } = new wasm.Instance(compiled, {}).exports;
  if (!(memory instanceof wasm.Memory) || typeof max !== 'function' || typeof expWeights !== 'function') {
    throw new Error('softmax kernel: the module lacks its exports');
  }
  return { memory, max: max as KernelExports['max'], expWeights: expWeights as KernelExports['expWeights'] };
}

export class SoftmaxKernel {
  /** The logits to sample from, [size] (the sampler writes them here). */
  readonly logits: Float32Array;
  /** exp((logits - max) / T) after expWeights(), [size]; 0 for -Infinity logits. */
  readonly weights: Float32Array;
  readonly #kernel: KernelExports;
  /** size rounded up to 8 (two 4-lane vectors a step); the logits' padding is -Infinity, so its weights are 0. */
  readonly #n4: number;

  constructor(readonly size: number) {
    this.#n4 = Math.ceil(size / 8) * 8;
    this.#kernel = instantiate();
    const bytes = 2 * this.#n4 * 4;
    const memory = this.#kernel.memory;
    const pages = Math.ceil(bytes / PAGE_BYTES) - memory.buffer.byteLength / PAGE_BYTES;
    if (pages > 0) memory.grow(pages);
    const padded = new Float32Array(memory.buffer, 0, this.#n4);
    padded.fill(-Infinity, size);
    this.logits = padded.subarray(0, size);
    this.weights = new Float32Array(memory.buffer, this.#n4 * 4, size);
  }

  /** The largest logit; NaN when any is NaN. */
  max(): number {
    return this.#kernel.max(this.#n4);
  }

  /** Writes weights = exp((logits - max) / temperature) (0 below e^-87) and returns their sum. `max` must be the largest logit. */
  expWeights(max: number, temperature: number): number {
    return this.#kernel.expWeights(this.#n4, this.#n4 * 4, max, 1 / temperature);
  }
}

/** The first id whose running sum of weights exceeds u * total (u in [0, 1)); weight-0 ids are never chosen. */
export function drawWeighted(weights: Float32Array, total: number, u: number): number {
  let r = u * total;
  let last = -1;
  for (let i = 0; i < weights.length; i++) {
    const w = weights[i] ?? 0;
    if (w > 0) {
      r -= w;
      if (r < 0) return i;
      last = i;
    }
  }
  // The sum here and the kernel's (lane-wise) differ in order; absorb the last ulp.
  if (last < 0) throw new Error('cannot sample: every weight is 0');
  return last;
}
