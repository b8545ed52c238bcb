/**
 * What the engine needs from a model: one forward step over a batch. The dense
 * decoder is one ONNX session; MoE models with expert offload run layer by layer
 * with experts loaded on demand. The engine does not know which.
 */
import type { DecoderStepInputs, DecoderStepOutputs } from './decoder-session.js';

export interface ModelRunner {
  run(inputs: DecoderStepInputs): Promise<DecoderStepOutputs>;
  release(): Promise<void>;
  /** Runner-specific counters for metrics (e.g. expert cache hits); empty for dense models. */
  stats(): Readonly<Record<string, number>>;
}
