/**
 * The served workload's mix, learned online: prompt tokens prefilled per token
 * generated, over recently finished requests (with forgetting, so a change of
 * workload is followed within a few dozen requests). The scheduler uses it to
 * keep prefill in pace with the decoding streams: in a steady state every
 * decoded token brings `ratio` prompt tokens of new work (a finished stream is
 * replaced by a new prompt), so a step that runs D decode tokens and fewer
 * than ratio x D prefill tokens lets the queue of prompts grow until fewer
 * streams decode. Plain numbers; no clock.
 */

/** Weight of the past per finished request: about the last 30 requests count. */
const FORGET = 0.97;

export class WorkloadMix {
  private prompt = 0;
  private generated = 0;

  /** A request finished: it prefilled `promptTokens` (cached prefix excluded) and generated `generatedTokens`. */
  observe(promptTokens: number, generatedTokens: number): void {
    if (!(generatedTokens > 0) || !(promptTokens >= 0) || !Number.isFinite(promptTokens + generatedTokens)) return;
    this.prompt = this.prompt * FORGET + promptTokens;
    this.generated = this.generated * FORGET + generatedTokens;
  }

  /** Prompt tokens per generated token of recent requests; null before any request finished having generated. */
  ratio(): number | null {
    return this.generated > 0 ? this.prompt / this.generated : null;
  }
}
