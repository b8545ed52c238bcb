/**
 * The context length the engine serves: the model's max_position_embeddings, or
 * `model.contextLength` when set, bounded by what the KV budget can hold for one
 * sequence (whole KV blocks). A checkpoint claiming 1e15 positions is served at
 * what the machine could hold, and the start log says so, instead of every
 * request later failing on an impossible KV reservation.
 */
import { KV_BLOCK, kvBytesPerToken, type KvShape } from '../kv/sequence-kv.js';

export interface ContextBound {
  readonly contextLength: number;
  /** One line for the start log when the bound applied; null when the requested length fits. */
  readonly note: string | null;
}

export function boundContextLength(
  shape: KvShape,
  kvBudgetBytes: number,
  /** The model's max_position_embeddings. */
  modelPositions: number,
  /** `model.contextLength` from the config, when set. */
  configured: number | null,
  /** Physical memory: a KV budget above it holds no more than it. */
  machineBytes: number,
): ContextBound {
  const requested = configured ?? modelPositions;
  const source = configured !== null ? `model.contextLength ${configured}` : `max_position_embeddings ${modelPositions}`;
  const perToken = kvBytesPerToken(shape);
  const budget = Math.min(kvBudgetBytes, machineBytes);
  const fits = Math.floor(Math.floor(budget / perToken) / KV_BLOCK) * KV_BLOCK;
  if (fits < KV_BLOCK) {
    throw new Error(
      `the KV budget (${budget} bytes) holds fewer than ${KV_BLOCK} tokens of this model's KV cache (${perToken} bytes per token); raise memory.kvBudgetBytes`,
    );
  }
  if (requested <= fits) return { contextLength: requested, note: null };
  return {
    contextLength: fits,
    note: `context length bounded to ${fits} tokens: ${source} is more than ${budget < kvBudgetBytes ? `this machine's memory (${budget} bytes` : `the KV budget (${budget} bytes`} at ${perToken} bytes per token) can hold for one sequence`,
  };
}
