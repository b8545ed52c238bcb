/** A long KV cache for decode-latency benchmarks without running a long prefill. */
import type { SequenceKv } from '../../src/kv/sequence-kv.js';
import type { TestModel } from '../helpers/session.js';

/**
 * A fresh cache of `entries` synthetic entries at positions 0..entries-1 (a smooth pattern, not
 * zeros, so attention over them is a real softmax), appended in chunks of 1024, with room for
 * `extra` more.
 */
export function syntheticKv(m: TestModel, entries: number, extra: number): SequenceKv {
  const spec = m.checkpoint.spec;
  const kv = m.newKv(entries + extra);
  const chunk = 1024;
  const present = Array.from({ length: spec.numLayers }, () =>
    Float32Array.from({ length: spec.numKvHeads * chunk * spec.headDim }, (_, i) => Math.sin(i * 0.7) * 0.5),
  );
  for (let done = 0; done < entries; done += chunk) {
    const n = Math.min(chunk, entries - done);
    kv.append(
      present,
      present,
      0,
      chunk,
      Array.from({ length: n }, (_, i) => done + i),
    );
  }
  return kv;
}
