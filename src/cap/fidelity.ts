/**
 * How closely a policy's next-token distributions follow the full-cache
 * model's, step by step: KL(full || policy) = sum_v p_full (log p_full -
 * log p_policy), averaged over steps, and the fraction of steps whose most
 * likely token is the same. Inputs are log-softmax rows, row-major [steps, vocab].
 */
export interface Fidelity {
  /** Mean KL divergence in nats, >= 0. */
  readonly kl: number;
  /** Fraction of steps whose argmax agrees, in [0, 1]. */
  readonly top1: number;
  readonly steps: number;
}

function argmax(row: Float32Array, start: number, vocab: number): number {
  let best = start;
  for (let i = start + 1; i < start + vocab; i++) if ((row[i] as number) > (row[best] as number)) best = i;
  return best - start;
}

export function fidelity(fullRows: Float32Array, policyRows: Float32Array, vocab: number, steps: number): Fidelity {
  if (!Number.isInteger(vocab) || vocab <= 0 || !Number.isInteger(steps) || steps <= 0) {
    throw new RangeError(`fidelity needs a positive vocabulary and step count, got vocab ${vocab}, steps ${steps}`);
  }
  if (fullRows.length < steps * vocab || policyRows.length < steps * vocab) {
    throw new RangeError(
      `fidelity over ${steps} steps of ${vocab} needs ${steps * vocab} values per side; got ${fullRows.length} (full) and ${policyRows.length} (policy)`,
    );
  }
  let klSum = 0;
  let agree = 0;
  for (let s = 0; s < steps; s++) {
    const base = s * vocab;
    let kl = 0;
    for (let v = base; v < base + vocab; v++) {
      const lf = fullRows[v] as number;
      // exp(-inf) = 0: a token the full model rules out contributes nothing, whatever the policy says.
      if (lf === -Infinity) continue;
      kl += Math.exp(lf) * (lf - (policyRows[v] as number));
    }
    // Rounding can leave a hair below zero when the rows are (nearly) identical.
    klSum += Math.max(0, kl);
    if (argmax(fullRows, base, vocab) === argmax(policyRows, base, vocab)) agree++;
  }
  return { kl: klSum / steps, top1: agree / steps, steps };
}
