/** Messages between the EngineClient (HTTP thread) and the inference worker. */
import type { PrefixCacheOptions } from '../kv/prefix-cache.js';
import type { QuantBlockSize } from '../model/compile/compile-model.js';
import type { WeightDtype } from '../model/compile/decoder-graph.js';
import type { ModelSpec } from '../model/spec.js';
import type { KvDtype } from '../model/step-io.js';
import type { CoreOutput, CoreStats } from './engine-core.js';
import type { GenerateRequest, ScoreRequest } from './types.js';

export interface WorkerInit {
  readonly modelDir: string;
  readonly cacheDir: string;
  readonly weightDtype: WeightDtype;
  /** MatMulNBits block size of int8/int4 dense weights; null: by dtype. MoE experts keep theirs. */
  readonly quantBlockSize: QuantBlockSize | null;
  readonly threads: number;
  /** onnxruntime's intra-op threads spin-wait between kernels (DecoderSession's `spinning`). */
  readonly threadSpinning: boolean;
  readonly maxConcurrent: number;
  readonly maxQueue: number;
  readonly kvBudgetBytes: number;
  /** KV cache storage dtype; MoE and elastic-weight runners keep fp32. */
  readonly kvDtype: KvDtype;
  /** Overrides the model's max_position_embeddings when set. */
  readonly contextLength: number | null;
  readonly prefillChunk: number;
  readonly maxTokensPerStep: number;
  readonly stepTargetMs: number;
  readonly prefixCache: PrefixCacheOptions | null;
  /** The expert-offload policy's params (MoE models); absent: the method's defaults. */
  readonly expertOffload?: Readonly<Record<string, unknown>>;
  /** The weight-elastic policy's params (dense models): the engine runs STI with them; absent: the dense graph. */
  readonly weightElastic?: Readonly<Record<string, unknown>>;
  /** A separate local model that scores prompts for context compression (same tokenizer). */
  readonly scorerModelDir?: string;
  /** Tests only: the worker honours `crash` messages. */
  readonly faultInjection?: true;
}

export type ToWorker =
  | { readonly type: 'generate'; readonly request: GenerateRequest }
  | { readonly type: 'score'; readonly request: ScoreRequest }
  | { readonly type: 'abort'; readonly id: string }
  | { readonly type: 'shutdown' }
  /** Fault injection (WorkerInit.faultInjection): throw an uncaught error, as a crash in native code would end the thread. */
  | { readonly type: 'crash' };

export interface ReadyInfo {
  readonly spec: ModelSpec;
  readonly contextLength: number;
  readonly weightBytes: number;
  readonly compiledDir: string;
  readonly runtimeVersion: string;
  /** The elastic-weights plan the worker runs (weightElastic set). */
  readonly weightPlan?: import('./types.js').WeightPlanReport;
}

export type FromWorker =
  | { readonly type: 'progress'; readonly message: string }
  | { readonly type: 'ready'; readonly info: ReadyInfo; readonly stats: CoreStats }
  | { readonly type: 'outputs'; readonly outputs: CoreOutput[]; readonly stats: CoreStats }
  /** The worker stopped: `message` names the file at fault first when there is one; `stack` is for debug logs only. */
  | { readonly type: 'fatal'; readonly message: string; readonly code: string | null; readonly stack: string | null };
