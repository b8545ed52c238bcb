/**
 * The model runners of one model, one per graph variant: the plain runner is
 * given, the others (attention statistics, Quest selection, all-resident MoE
 * reference) are asked of `load` on first need. A dense model's are views of
 * the plain runner's session (nothing loaded); an MoE model's open their layer
 * graphs then. Counts passes per variant and the time spent inside the runners.
 */
import type { DecoderStepInputs, DecoderStepOutputs } from '../model/step-io.js';
import type { GraphVariant } from '../policies/runtime.js';
import type { ModelRunner } from '../runtime/model-runner.js';

export type LoadVariant = (variant: Exclude<GraphVariant, 'plain'>) => Promise<ModelRunner>;

export class VariantRunners {
  private readonly loaded = new Map<GraphVariant, ModelRunner>();
  readonly passes: Record<GraphVariant, number> = { plain: 0, stats: 0, quest: 0, reference: 0 };
  forwardMs = 0;

  constructor(
    readonly plain: ModelRunner,
    private readonly load: LoadVariant,
    /** Variants this model has besides plain. */
    readonly available: readonly Exclude<GraphVariant, 'plain'>[],
  ) {}

  has(variant: GraphVariant): boolean {
    return variant === 'plain' || this.available.includes(variant);
  }

  async run(variant: GraphVariant, inputs: DecoderStepInputs): Promise<DecoderStepOutputs> {
    let runner = this.plain;
    if (variant !== 'plain') {
      let r = this.loaded.get(variant);
      if (!r) {
        r = await this.load(variant);
        this.loaded.set(variant, r);
      }
      runner = r;
    }
    const f0 = performance.now();
    this.passes[variant] += 1;
    const out = await runner.run(inputs);
    this.forwardMs += performance.now() - f0;
    return out;
  }
}
