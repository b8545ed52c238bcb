export interface StopPush {
  /** Text that can no longer be part of a stop string, safe to show. */
  readonly emit: string;
  readonly stopped: boolean;
  /** The stop string that matched, when stopped. */
  readonly matched: string | null;
}

/**
 * Finds stop strings in streamed text (OpenAI semantics: the stop string and
 * everything after it are never emitted).
 *
 * It holds back the longest suffix of the text that is a prefix of some stop
 * string, so stops spanning deltas ("\n" + "\nUs" + "er") are caught. That
 * hold-back is sufficient: a match cannot start before it, or the longer
 * suffix from its start would have been held instead.
 *
 * When several stops occur, the one that is complete first (earliest end) wins,
 * and among those ending together the one starting first (the longest). That
 * is what a character-at-a-time stream would report, so the result does not
 * depend on how text is split into deltas.
 */
export class StopMatcher {
  readonly #stops: readonly string[];
  #held = '';
  #stopped = false;

  constructor(stops: readonly string[]) {
    for (let i = 0; i < stops.length; i++) {
      if (typeof stops[i] !== 'string' || stops[i] === '') {
        throw new RangeError(`stop[${i}] must be a non-empty string`);
      }
    }
    this.#stops = [...stops];
  }

  get stopped(): boolean {
    return this.#stopped;
  }

  push(delta: string): StopPush {
    if (this.#stopped) throw new Error('StopMatcher.push called after a stop string matched');
    if (this.#stops.length === 0) return { emit: delta, stopped: false, matched: null };
    const text = this.#held + delta;

    let bestStart = -1;
    let bestEnd = Infinity;
    let matched: string | null = null;
    for (const stop of this.#stops) {
      const start = text.indexOf(stop);
      if (start < 0) continue;
      const end = start + stop.length;
      if (end < bestEnd || (end === bestEnd && start < bestStart)) {
        bestStart = start;
        bestEnd = end;
        matched = stop;
      }
    }
    if (matched !== null) {
      this.#held = '';
      this.#stopped = true;
      return { emit: text.slice(0, bestStart), stopped: true, matched };
    }

    const hold = this.#partialMatchLength(text);
    this.#held = text.slice(text.length - hold);
    return { emit: text.slice(0, text.length - hold), stopped: false, matched: null };
  }

  /** Releases held-back text at the end of generation; empty after a stop. */
  flush(): string {
    const held = this.#held;
    this.#held = '';
    return held;
  }

  /** Longest proper prefix of any stop that text ends with. */
  #partialMatchLength(text: string): number {
    let best = 0;
    for (const stop of this.#stops) {
      for (let k = Math.min(stop.length - 1, text.length); k > best; k--) {
        if (endsWithPrefix(text, stop, k)) {
          best = k;
          break;
        }
      }
    }
    return best;
  }
}

/** text ends with stop.slice(0, k), compared in place to avoid slicing per candidate. */
function endsWithPrefix(text: string, stop: string, k: number): boolean {
  const offset = text.length - k;
  for (let i = 0; i < k; i++) {
    if (text.charCodeAt(offset + i) !== stop.charCodeAt(i)) return false;
  }
  return true;
}
