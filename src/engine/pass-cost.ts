/**
 * What forward passes cost on this machine, learned online from the engine's
 * own steps, for a scheduler that sizes prefill chunks by time rather than by
 * a fixed token count (Sarathi-Serve's budget from a latency target, measured
 * instead of profiled offline). A prefill pass of t tokens (padding included)
 * is modelled as `fixedMs + perTokenMs * t`, fitted by least squares over
 * recent passes with exponential forgetting, so a machine that becomes busier
 * or idler is followed within a few dozen passes. The decode passes of a step
 * are the moving average of the last steps' (the batch changes by a few
 * sequences per step). Plain numbers out; no clock inside (callers time).
 */

/** The scheduler's view of pass costs: plain data. */
export interface PassCosts {
  /** Predicted time of this step's decode passes (all groups together), ms. */
  readonly decodeMs: number;
  /** Prefill pass time at 0 tokens (weights read once, graph overhead), ms. */
  readonly prefillFixedMs: number;
  /** Prefill time per token beyond the fixed part, ms. */
  readonly prefillPerTokenMs: number;
}

/** Weight of the past per new sample: about the last 20 passes count. */
const FORGET = 0.95;
const DECODE_ALPHA = 0.3;

export class PassCostModel {
  private w = 0;
  private st = 0;
  private stt = 0;
  private sm = 0;
  private stm = 0;
  private decode: number | null = null;

  /** One prefill pass of `tokens` tokens (padding included) took `ms`. */
  observePrefill(tokens: number, ms: number): void {
    if (!(tokens > 0) || !(ms >= 0) || !Number.isFinite(ms)) return;
    this.w = this.w * FORGET + 1;
    this.st = this.st * FORGET + tokens;
    this.stt = this.stt * FORGET + tokens * tokens;
    this.sm = this.sm * FORGET + ms;
    this.stm = this.stm * FORGET + tokens * ms;
  }

  /** A step's decode passes (all groups) took `ms`. */
  observeDecode(ms: number): void {
    if (!(ms >= 0) || !Number.isFinite(ms)) return;
    this.decode = this.decode === null ? ms : this.decode + DECODE_ALPHA * (ms - this.decode);
  }

  /** The current estimates; null until a prefill pass and a decode step have been seen. */
  costs(): PassCosts | null {
    if (this.decode === null || this.w === 0) return null;
    const meanT = this.st / this.w;
    const meanM = this.sm / this.w;
    const varT = this.stt / this.w - meanT * meanT;
    // One pass size so far (or nearly): no slope to fit, so all of the time is per token (chunks come out smaller, never larger).
    let perToken = meanM / meanT;
    let fixed = 0;
    if (varT > 1e-6 * meanT * meanT) {
      const slope = (this.stm / this.w - meanT * meanM) / varT;
      const intercept = meanM - slope * meanT;
      if (slope > 0 && intercept >= 0) {
        perToken = slope;
        fixed = intercept;
      } else if (slope > 0) {
        perToken = meanM / meanT;
      }
    }
    return { decodeMs: this.decode, prefillFixedMs: fixed, prefillPerTokenMs: perToken };
  }
}
