/** An EngineCore in-process (no worker thread), for engine-level policy tests that inspect outputs directly. */
import { EngineCore, type CoreOutput } from '../../src/engine/engine-core.js';
import type { GenerateRequest, ScoreRequest, ScoreResult, TokenEvent } from '../../src/engine/types.js';
import { compileModel } from '../../src/model/compile/compile-model.js';
import { loadCheckpoint, type Checkpoint } from '../../src/model/checkpoint.js';
import { DecoderSession } from '../../src/runtime/decoder-session.js';
import type { TextTokenizer } from '../../src/model/tokenizer-types.js';
import type { PrefixCacheOptions } from '../../src/kv/prefix-cache.js';
import type { KvDtype } from '../../src/model/step-io.js';
import { TEST_CACHE_DIR } from './session.js';

export interface TestCore {
  readonly core: EngineCore;
  readonly checkpoint: Checkpoint;
  /** Runs the engine until this request finishes; returns its events. */
  generate(request: GenerateRequest): Promise<TokenEvent[]>;
  score(request: ScoreRequest): Promise<ScoreResult>;
  /** Largest KV allocation seen after any step. */
  peakKvBytes(): number;
  close(): Promise<void>;
}

export interface TestCoreOptions {
  prefillChunk?: number;
  kvBudgetBytes?: number;
  /** onnxruntime intra-op threads (default 1). */
  threads?: number;
  /** Wraps the model's tokenizer (fault injection). */
  tokenizer?: (inner: TextTokenizer) => TextTokenizer;
  /** Chunked-prefill budget per step (default: none). */
  maxTokensPerStep?: number;
  /** Step latency target in ms (default: none). */
  stepTargetMs?: number;
  /** The prefix cache (default: none). */
  prefixCache?: PrefixCacheOptions;
  /** KV cache storage dtype (default fp32). */
  kvDtype?: KvDtype;
}

export async function openTestCore(dir: string, options: TestCoreOptions = {}): Promise<TestCore> {
  const checkpoint = loadCheckpoint(dir);
  const compiled = compileModel(checkpoint, { cacheDir: TEST_CACHE_DIR, weightDtype: 'fp32', kvDtype: options.kvDtype ?? 'fp32' });
  const spec = checkpoint.spec;
  const session = await DecoderSession.create(compiled.decoderPath, spec, { threads: options.threads ?? 1 });
  const core = new EngineCore(
    session,
    async (variant) => {
      if (variant === 'reference') throw new Error('no reference variant for a dense model');
      return session.variant(variant);
    },
    spec,
    options.tokenizer ? options.tokenizer(checkpoint.tokenizer) : checkpoint.tokenizer,
    {
      maxConcurrent: 8,
      maxQueue: 64,
      kvBudgetBytes: options.kvBudgetBytes ?? 2 * 1024 ** 3,
      kvDtype: options.kvDtype ?? 'fp32',
      contextLength: spec.maxPositionEmbeddings,
      prefillChunk: options.prefillChunk ?? 64,
      variants: ['stats', 'quest'],
      ...(options.maxTokensPerStep !== undefined ? { maxTokensPerStep: options.maxTokensPerStep } : {}),
      ...(options.stepTargetMs !== undefined ? { stepTargetMs: options.stepTargetMs } : {}),
      ...(options.prefixCache !== undefined ? { prefixCache: options.prefixCache } : {}),
    },
  );
  let peak = 0;
  const pending: CoreOutput[] = [];
  const runUntil = async (id: string, isDone: (o: CoreOutput) => boolean): Promise<CoreOutput[]> => {
    const mine: CoreOutput[] = [];
    for (;;) {
      for (const o of core.drain()) pending.push(o);
      for (let i = 0; i < pending.length;) {
        const o = pending[i];
        if (o && o.id === id) {
          pending.splice(i, 1);
          mine.push(o);
          if ('error' in o) throw new Error(`${o.error.code}: ${o.error.message}`);
          if (isDone(o)) return mine;
        } else i += 1;
      }
      if (!core.hasWork()) throw new Error(`request ${id} never finished`);
      await core.step();
      peak = Math.max(peak, core.stats().kvBytesUsed);
      // As the worker does: outputs out, then the work no token waits for.
      for (const o of core.drain()) pending.push(o);
      core.maintain();
    }
  };
  return {
    core,
    checkpoint,
    async generate(request) {
      core.submit(request);
      const outs = await runUntil(request.id, (o) => 'event' in o && o.event.type === 'done');
      return outs.flatMap((o) => ('event' in o ? [o.event] : []));
    },
    async score(request) {
      core.submitScore(request);
      const outs = await runUntil(request.id, (o) => 'scored' in o);
      const last = outs[outs.length - 1];
      if (!last || !('scored' in last)) throw new Error('no score result');
      return last.scored;
    },
    peakKvBytes: () => peak,
    async close() {
      await session.release();
    },
  };
}
