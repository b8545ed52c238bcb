import { SoftmaxKernel } from './softmax-kernel.js';
import { TOP_P_BUCKETS } from './top-p.js';

/**
 * Vocab-sized working buffers for one sample() call. Sampling is synchronous
 * and a sample() call never yields, so every sequence of a process (or worker
 * thread: each has its own module instance) can share one set per vocab size.
 * Per-sequence buffers would cost ~2.7 MB per running sequence at 152k vocab.
 * Nothing in here survives a sample() call; per-sequence state lives in
 * TokenHistory and the sampler.
 */
export class SamplingScratch {
  /** The caller's logits after bias and penalties (in the kernel's memory). */
  readonly work: Float32Array;
  /** The vocabulary-wide passes (largest logit, weights and their sum) over `work`. */
  readonly kernel: SoftmaxKernel;
  /** Candidate token ids; the prefix in use is tracked by the caller. */
  readonly ids: Int32Array;
  /** exp((logit - max) / T) by token id, i.e. probability relative to the most likely token. */
  readonly probs: Float64Array;
  /** Top-p bucket by token id, and weight per bucket (see top-p.ts). */
  readonly bucketOf: Uint16Array;
  readonly bucketMass: Float64Array;

  constructor(readonly vocabSize: number) {
    this.kernel = new SoftmaxKernel(vocabSize);
    this.work = this.kernel.logits;
    this.ids = new Int32Array(vocabSize);
    this.probs = new Float64Array(vocabSize);
    this.bucketOf = new Uint16Array(vocabSize);
    this.bucketMass = new Float64Array(TOP_P_BUCKETS);
  }
}

const shared = new Map<number, SamplingScratch>();

export function sharedScratch(vocabSize: number): SamplingScratch {
  let s = shared.get(vocabSize);
  if (s === undefined) {
    s = new SamplingScratch(vocabSize);
    shared.set(vocabSize, s);
  }
  return s;
}
