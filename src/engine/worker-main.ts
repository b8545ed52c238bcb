/**
 * Entry point of the inference worker thread: loads and compiles the model,
 * then runs the engine loop. onnxruntime's session.run blocks the thread it runs
 * on, so it lives here and the HTTP thread only exchanges messages.
 */
import { totalmem } from 'node:os';
import { parentPort, workerData } from 'node:worker_threads';
import { boundContextLength } from './context-bound.js';
import { compileModel, type CompiledModel } from '../model/compile/compile-model.js';
import { loadCheckpoint } from '../model/checkpoint.js';
import { DecoderSession, runtimeVersion } from '../runtime/decoder-session.js';
import { openMoeRunnerForWorker } from './moe-runner-factory.js';
import { EngineCore } from './engine-core.js';
import type { ModelRunner } from '../runtime/model-runner.js';
import { openMoeRunner, parseEdgeMoeParams } from './moe-runner-factory.js';
import { MoeRunner } from '../runtime/moe-runner.js';
import { resolveEdgeMoe } from '../policies/expert-offload/edgemoe.js';
import { openStiRunnerForWorker } from './sti-runner-factory.js';
import { tokenizerMismatch } from '../policies/compression/scorer.js';
import { ModelScorer } from './model-scorer.js';
import type { FromWorker, ToWorker, WorkerInit } from './worker-protocol.js';

if (!parentPort) throw new Error('worker-main.ts must run as a worker thread');
const port = parentPort;
const init = workerData as WorkerInit;
const send = (m: FromWorker): void => port.postMessage(m);

async function main(): Promise<void> {
  send({ type: 'progress', message: `loading checkpoint ${init.modelDir}` });
  const checkpoint = loadCheckpoint(init.modelDir);
  const spec = checkpoint.spec;
  const progress = (message: string): void => send({ type: 'progress', message });
  // Elastic weights (STI) start from their shards; the dense graphs are compiled (and their files
  // checked, which reads every weight) only if the full-precision shadow reference is asked for.
  let compiledOnce: CompiledModel | null = null;
  // A half-size KV cache is a property of the dense graph's past inputs; MoE and elastic-weight graphs keep fp32.
  const kvDtype = spec.moe === undefined && init.weightElastic === undefined ? init.kvDtype : 'fp32';
  if (kvDtype !== init.kvDtype) progress(`memory.kvDtype ${init.kvDtype} applies to dense models only; this one keeps an fp32 KV cache`);
  const compiled = (): CompiledModel => {
    compiledOnce ??= compileModel(checkpoint, {
      cacheDir: init.cacheDir,
      weightDtype: init.weightDtype,
      kvDtype,
      ...(init.quantBlockSize !== null ? { quantBlockSize: init.quantBlockSize } : {}),
      onProgress: progress,
    });
    return compiledOnce;
  };
  const elastic =
    spec.moe === undefined && init.weightElastic !== undefined
      ? await openStiRunnerForWorker(checkpoint, checkpoint.tokenizer, init.cacheDir, init.threads, init.weightElastic, progress)
      : null;
  const session: ModelRunner =
    elastic !== null
      ? elastic.runner
      : spec.moe !== undefined
        ? await openMoeRunnerForWorker(compiled(), spec, checkpoint.tokenizer, init.threads, init.expertOffload)
        : await DecoderSession.create(compiled().decoderPath, spec, { threads: init.threads, spinning: init.threadSpinning });
  const bound = boundContextLength(
    { numLayers: spec.numLayers, numKvHeads: spec.numKvHeads, headDim: spec.headDim, dtype: kvDtype },
    init.kvBudgetBytes,
    spec.maxPositionEmbeddings,
    init.contextLength,
    totalmem(),
  );
  if (bound.note !== null) send({ type: 'progress', message: bound.note });
  const contextLength = bound.contextLength;
  const loadVariant = (variant: 'stats' | 'quest' | 'reference'): Promise<ModelRunner> => {
    if (variant === 'reference' && elastic !== null) {
      // The full-precision dense graph: what an elastic-weights plan's shadow fidelity compares against.
      return DecoderSession.create(compiled().decoderPath, spec, { threads: init.threads, spinning: init.threadSpinning });
    }
    // Elastic weights run the same attention variants layer by layer, on the plan's shards.
    if (elastic !== null && variant !== 'reference') return elastic.runner.variant(variant);
    if (variant === 'reference') {
      // Every expert resident at fp32: what an expert-offload policy's shadow fidelity compares against.
      const config = resolveEdgeMoe(parseEdgeMoeParams({ budgetBytes: Number.MAX_SAFE_INTEGER, bits: 32, prefetch: false }));
      return openMoeRunner(compiled(), spec, { threads: init.threads, tokenizer: checkpoint.tokenizer, config, preload: true });
    }
    // MoE models run the same attention variants layer by layer, sharing the served runner's experts.
    if (session instanceof MoeRunner) return session.variant(variant);
    // The dense graph holds every variant: a view over the served session, nothing loaded.
    if (session instanceof DecoderSession) return Promise.resolve(session.variant(variant));
    return Promise.reject(new Error(`this runner has no ${variant} graph variant`));
  };
  const core = new EngineCore(session, loadVariant, spec, checkpoint.tokenizer, {
    maxConcurrent: init.maxConcurrent,
    maxQueue: init.maxQueue,
    kvBudgetBytes: init.kvBudgetBytes,
    kvDtype,
    contextLength,
    prefillChunk: init.prefillChunk,
    maxTokensPerStep: init.maxTokensPerStep,
    stepTargetMs: init.stepTargetMs,
    prefixCache: init.prefixCache,
    variants: spec.moe !== undefined || elastic !== null ? ['reference', 'stats', 'quest'] : ['stats', 'quest'],
    ...(init.scorerModelDir
      ? {
          openScorer: async (): Promise<ModelScorer> => {
            const scorerDir = init.scorerModelDir ?? '';
            const scorer = await ModelScorer.open(scorerDir, { cacheDir: init.cacheDir, threads: init.threads });
            const mismatch = scorer.tokenizer ? tokenizerMismatch(scorer.tokenizer, checkpoint.tokenizer) : 'the scorer has no tokenizer';
            if (mismatch) throw new Error(`the compression scorer ${scorerDir} does not share the served model's tokenizer: ${mismatch}`);
            return scorer;
          },
        }
      : {}),
  });

  let shuttingDown = false;
  let wake: (() => void) | null = null;
  port.on('message', (m: ToWorker) => {
    if (m.type === 'generate') core.submit(m.request);
    else if (m.type === 'score') core.submitScore(m.request);
    else if (m.type === 'abort') core.abort(m.id);
    else if (m.type === 'shutdown') shuttingDown = true;
    else if (init.faultInjection === true) {
      // m.type === 'crash', the last kind
      setImmediate(() => {
        throw new Error('injected crash');
      });
    }
    const w = wake;
    wake = null;
    w?.();
  });
  send({
    type: 'ready',
    info: {
      spec,
      contextLength,
      weightBytes: elastic !== null ? elastic.report.alwaysResidentBytes + elastic.report.residentBytes + elastic.report.preloadBytes : compiled().weightBytes,
      compiledDir: elastic !== null ? elastic.runner.dir : compiled().dir,
      runtimeVersion: runtimeVersion(),
      ...(elastic !== null ? { weightPlan: elastic.report } : {}),
    },
    stats: core.stats(),
  });

  const flush = (): void => {
    const outputs = core.drain();
    if (outputs.length > 0) send({ type: 'outputs', outputs, stats: core.stats() });
  };
  for (;;) {
    flush();
    if (!core.hasWork()) {
      // The message handler sets it between steps; TypeScript's narrowing cannot see that.
      // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition
      if (shuttingDown) break;
      await new Promise<void>((resolve) => {
        wake = resolve;
      });
      continue;
    }
    await core.step();
    flush();
    // Work no token waits for (prefix-cache stores of finished sequences), once their last tokens are on their way.
    core.maintain();
    // Let queued messages (new requests, aborts) in between steps.
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
  await session.release();
  port.close();
}

main().catch((err: unknown) => {
  const code = err instanceof Error && 'code' in err && typeof err.code === 'string' ? err.code : null;
  send({ type: 'fatal', message: fatalMessage(err), code, stack: err instanceof Error ? (err.stack ?? null) : null });
});

/**
 * One line naming the file at fault first: checkpoint errors already start with
 * their file; anything else is placed under the model directory it came from.
 */
function fatalMessage(err: unknown): string {
  const message = (err instanceof Error ? err.message : String(err)).trim();
  if (message.startsWith('/') || message.startsWith(init.modelDir)) return message;
  return `${init.modelDir}: ${message}`;
}
