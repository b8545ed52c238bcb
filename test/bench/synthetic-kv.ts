/** Decode-latency benchmarks over long synthetic KV caches: their arguments and the cache, without a long prefill. */
import { parseArgs } from 'node:util';
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

export interface LongContextArgs {
  readonly model: string;
  readonly contexts: readonly number[];
  readonly steps: number;
  readonly threads: number;
  readonly cacheDir: string;
}

/** `--model DIR [--contexts N,N,...] [--steps N] [--threads N] [--cache-dir DIR]` of a long-context decode bench. */
export function longContextArgs(defaultContexts: string): LongContextArgs {
  const { values } = parseArgs({
    options: {
      model: { type: 'string' },
      contexts: { type: 'string', default: defaultContexts },
      steps: { type: 'string', default: '12' },
      threads: { type: 'string', default: '2' },
      'cache-dir': { type: 'string', default: '.cache/compiled' },
    },
  });
  if (!values.model) throw new Error('--model is required');
  return {
    model: values.model,
    contexts: values.contexts.split(',').map(Number),
    steps: Number(values.steps),
    threads: Number(values.threads),
    cacheDir: values['cache-dir'],
  };
}
