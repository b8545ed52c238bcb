import type { TokenHistory } from './token-history.js';

/**
 * One in-place step on a sequence's working logits (never the caller's array).
 * The sampler builds a list of only the processors a request activates, so a
 * plain request pays nothing for penalties it does not use.
 */
export interface LogitsProcessor {
  apply(logits: Float32Array): void;
}

/**
 * OpenAI documents -100 as "should result in a ban", and masks elsewhere in
 * the engine use -Infinity; so a bias at or below this is a hard ban rather
 * than a large negative number that a very confident logit could still beat.
 */
export const LOGIT_BIAS_BAN = -100;

/** logit += bias; bias <= -100 sets -Infinity. */
export function applyLogitBias(logits: Float32Array, ids: Int32Array, values: Float32Array): void {
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i] ?? 0;
    const bias = values[i] ?? 0;
    logits[id] = bias <= LOGIT_BIAS_BAN ? -Infinity : (logits[id] ?? 0) + bias;
  }
}

/** HF / CTRL: for every seen token, logit = logit > 0 ? logit / penalty : logit * penalty. */
export function applyRepetitionPenalty(logits: Float32Array, ids: Int32Array, count: number, penalty: number): void {
  for (let i = 0; i < count; i++) {
    const id = ids[i] ?? 0;
    const l = logits[id] ?? 0;
    logits[id] = l > 0 ? l / penalty : l * penalty;
  }
}

/** OpenAI: logit -= presence * (count > 0) + frequency * count, over generated tokens only. */
export function applyPresenceFrequencyPenalty(
  logits: Float32Array,
  ids: Int32Array,
  counts: Uint32Array,
  distinct: number,
  presence: number,
  frequency: number,
): void {
  for (let i = 0; i < distinct; i++) {
    const id = ids[i] ?? 0;
    logits[id] = (logits[id] ?? 0) - (presence + frequency * (counts[i] ?? 0));
  }
}

export class LogitBiasProcessor implements LogitsProcessor {
  readonly #ids: Int32Array;
  readonly #values: Float32Array;

  /** Flattens the map once so the per-token pass is two typed arrays, no iterator objects. */
  constructor(bias: ReadonlyMap<number, number>, vocabSize: number) {
    this.#ids = new Int32Array(bias.size);
    this.#values = new Float32Array(bias.size);
    let i = 0;
    for (const [id, value] of bias) {
      if (!Number.isInteger(id) || id < 0 || id >= vocabSize) {
        throw new RangeError(`logitBias key must be a token id in [0, ${vocabSize}), got ${String(id)}`);
      }
      if (!Number.isFinite(value)) {
        throw new RangeError(`logitBias value for token ${id} must be a finite number, got ${String(value)}`);
      }
      this.#ids[i] = id;
      this.#values[i] = value;
      i++;
    }
  }

  apply(logits: Float32Array): void {
    applyLogitBias(logits, this.#ids, this.#values);
  }
}

export class RepetitionPenaltyProcessor implements LogitsProcessor {
  constructor(
    private readonly history: TokenHistory,
    private readonly penalty: number,
  ) {}

  apply(logits: Float32Array): void {
    applyRepetitionPenalty(logits, this.history.seenIds, this.history.seenCount, this.penalty);
  }
}

export class PresenceFrequencyPenaltyProcessor implements LogitsProcessor {
  constructor(
    private readonly history: TokenHistory,
    private readonly presence: number,
    private readonly frequency: number,
  ) {}

  apply(logits: Float32Array): void {
    const h = this.history;
    applyPresenceFrequencyPenalty(logits, h.generatedIds, h.generatedCounts, h.generatedDistinct, this.presence, this.frequency);
  }
}
