/** One step's next-token distributions (log-probability rows) compared: KL(full || policy) and each side's top-1 token. */
export interface RowComparison {
  readonly kl: number;
  readonly fullTop: number;
  readonly policyTop: number;
}

export function compareRows(full: Float32Array, policy: Float32Array, step: number, V: number): RowComparison {
  let kl = 0;
  let af = 0;
  let ap = 0;
  const o = step * V;
  for (let v = 0; v < V; v++) {
    const lf = full[o + v] ?? -Infinity;
    const lp = policy[o + v] ?? -Infinity;
    if (lf > -Infinity) kl += Math.exp(lf) * (lf - lp);
    if (lf > (full[o + af] ?? -Infinity)) af = v;
    if (lp > (policy[o + ap] ?? -Infinity)) ap = v;
  }
  return { kl, fullTop: af, policyTop: ap };
}
