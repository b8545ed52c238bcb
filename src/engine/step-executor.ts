/**
 * The execute stage of an engine step: runs the passes a StepPlan names on the
 * model runners (a decode group, a padded batch of fresh prompts, one prefill
 * chunk, a before-prefill hook), appends the new KV, hands each sequence's
 * share of the pass to its policy runtime, and passes logits to the update
 * stage. Policies are reached only through their runtime contract. A failed
 * pass fails the sequences in it; one sequence's failure ends it alone.
 */
import type { SequenceKv } from '../kv/sequence-kv.js';
import type { DecoderStepInputs, DecoderStepOutputs } from '../model/step-io.js';
import type { ModelSpec } from '../model/spec.js';
import type { TextTokenizer } from '../model/tokenizer-types.js';
import type { TokenScorer } from '../policies/compression/scorer.js';
import type { GraphVariant, PassPhase, StatsSlice } from '../policies/runtime.js';
import { EngineError } from './errors.js';
import { collectScores } from './scoring.js';
import type { Sequence } from './sequence.js';
import type { StepInputBuilder } from './step-inputs.js';
import type { StepUpdate } from './step-update.js';
import type { VariantRunners } from './variant-runners.js';

/** A decode group's name for its gathered past: its variant and batch key. */
function groupKey(variant: GraphVariant, key: string): string {
  return `${variant}\u0000${key}`;
}

export interface ExecutorDeps {
  readonly runners: VariantRunners;
  readonly inputs: StepInputBuilder;
  readonly spec: ModelSpec;
  readonly tokenizer: TextTokenizer;
  readonly contextLength: number;
  readonly update: StepUpdate;
  /** The compression scorer, opened on first use. */
  readonly scorer: () => Promise<TokenScorer & { clearCache(): void }>;
}

export class StepExecutor {
  decodeTokens = 0;
  /** Time spent in before-prefill hooks (scorer passes), counted as forward time. */
  hookMs = 0;

  constructor(private readonly d: ExecutorDeps) {}

  /** KV entries (per layer) copied into decode groups' gathered pasts so far. */
  get gatheredKvEntries(): number {
    return this.d.inputs.gatheredEntries;
  }

  /** Bytes of the decode groups' gathered pasts (copies of their sequences' KV). */
  get gatheredKvBytes(): number {
    return this.d.inputs.gatheredBytes;
  }

  /** After a step's decode passes: groups that did not decode (their sequences finished or left) give back their gathered past. */
  keepDecodeGroups(groups: readonly { readonly variant: GraphVariant; readonly key: string }[]): void {
    this.d.inputs.keepGroups(new Set(groups.map((g) => groupKey(g.variant, g.key))));
  }

  /** One decode step for a group of sequences sharing a variant and batch key. Throws when the pass fails. */
  async decodeGroup(variant: GraphVariant, key: string, members: readonly Sequence[]): Promise<void> {
    // Rows in the order the group's gathered past already holds them: a step copies only what changed.
    const group = groupKey(variant, key);
    const memberKvs = members.map((s) => {
      if (!s.kv) throw new Error('unreachable: decoding without KV');
      return s.kv;
    });
    const order = this.d.inputs.decodeOrder(group, memberKvs);
    const batch = order.map((i) => members[i] as Sequence);
    const kvs = order.map((i) => memberKvs[i] as SequenceKv);
    const tokens = batch.map((s) => s.pendingToken);
    const positions = kvs.map((kv) => kv.nextPosition);
    let inputs = this.d.inputs.decode(kvs, tokens, positions, variant === 'stats' ? 1 : null, group);
    const first = batch[0];
    if (first) inputs = { ...inputs, ...first.runtime.groupInputs(batch.map((s, b) => ({ runtime: s.runtime, kv: kvs[b] as SequenceKv }))) };
    const before = kvs.map((kv) => this.layerLengths(kv));
    const out = await this.d.runners.run(variant, inputs);
    const V = this.d.spec.vocabSize;
    batch.forEach((s, b) =>
      this.d.update.isolated(s, () => {
        if (!s.kv) return;
        s.kv.append(out.presentKeys, out.presentValues, b, 1, [positions[b] ?? 0]);
        this.afterPass(s, s.kv, out, inputs, b, before[b] ?? [], 'decode');
        this.d.update.accept(s, out.logits.subarray(b * V, (b + 1) * V));
      }),
    );
    this.decodeTokens += batch.length;
  }

  /** Whole short prompts of fresh sequences in one padded pass. */
  async prefillFresh(batch: readonly Sequence[]): Promise<void> {
    const inputs = this.d.inputs.prefillFresh(batch.map((s) => s.prompt));
    const out = await this.d.runners.run('plain', inputs);
    const V = this.d.spec.vocabSize;
    const now = performance.now();
    batch.forEach((seq, b) =>
      this.d.update.isolated(seq, () => {
        const kv = seq.kv;
        if (!kv) throw new Error('unreachable: prefilling without KV');
        const n = seq.prompt.length;
        kv.append(
          out.presentKeys,
          out.presentValues,
          b,
          inputs.newTokens,
          Array.from({ length: n }, (_, i) => i),
        );
        seq.prefilled = n;
        seq.runtime.afterPass(kv, { phase: 'prefill-end', contextTokens: seq.contextTokens(false), stats: null });
        seq.prefillDoneAt = now;
        seq.state = 'decoding';
        this.d.update.accept(seq, out.logits.subarray(b * V, (b + 1) * V));
      }),
    );
  }

  /** One prefill chunk of one sequence; the last one samples its first token (or ends a scoring pass). */
  async prefillChunk(seq: Sequence, size: number, last: boolean, variant: GraphVariant): Promise<void> {
    const kv = seq.kv;
    if (!kv) throw new Error('unreachable: prefilling without KV');
    const chunk = seq.prompt.slice(seq.prefilled, seq.prefilled + size);
    const start = kv.nextPosition;
    const shape = seq.runtime.prefillShape(last);
    const inputs = this.d.inputs.prefill(kv, chunk, start, {
      allLogits: seq.scoring !== null,
      restrict: shape.restrict,
      ...(shape.attnWindow !== null ? { attnWindow: shape.attnWindow } : {}),
    });
    const lengthBefore = this.layerLengths(kv);
    const out = await this.d.runners.run(variant, inputs);
    const positions = Array.from({ length: chunk.length }, (_, i) => start + i);
    kv.append(out.presentKeys, out.presentValues, 0, chunk.length, positions);
    if (seq.scoring) collectScores(seq, out.logits, seq.prefilled, chunk.length, this.d.spec.vocabSize);
    seq.prefilled += chunk.length;
    this.afterPass(seq, kv, out, inputs, 0, lengthBefore, last ? 'prefill-end' : 'prefill-chunk');
    if (!last) return;
    if (seq.scoring) {
      this.d.update.finishScoring(seq);
      return;
    }
    seq.prefillDoneAt = performance.now();
    seq.state = 'decoding';
    this.d.update.accept(seq, out.logits.subarray(0, this.d.spec.vocabSize));
  }

  /**
   * The policy's before-prefill hook (context compression with the served or
   * the configured scorer model: its forward passes run here, on the inference
   * thread, the P cost of C, timed and reported).
   */
  async beforePrefill(seq: Sequence): Promise<void> {
    const hook = seq.runtime.beforePrefill;
    if (hook !== null) {
      // Opened before the clock starts: loading a separate scorer model is not the policy's per-request cost.
      const scorer = await this.d.scorer();
      const t0 = performance.now();
      const done = await hook({
        prompt: seq.request.promptTokens,
        segments: seq.request.segments,
        compressionRate: seq.request.compressionRate,
        tokenizer: this.d.tokenizer,
        scorer: () => Promise.resolve(scorer),
      });
      seq.beforePrefillMs = performance.now() - t0;
      this.hookMs += seq.beforePrefillMs;
      seq.prompt = done.prompt;
      seq.dropped = done.result.dropped;
      this.checkShrunkPrompt(seq);
    }
    seq.state = 'prefilling';
  }

  private checkShrunkPrompt(seq: Sequence): void {
    const n = seq.prompt.length;
    if (n === 0) throw new EngineError('invalid_request', 'context compression left an empty prompt', { field: 'policy' });
    if (n >= this.d.contextLength) {
      throw new EngineError(
        'context_length_exceeded',
        `This model's maximum context length is ${this.d.contextLength} tokens. Your prompt of ${seq.request.promptTokens.length} tokens was compressed to ${n} tokens by ${seq.request.policy}, which still leaves no room to generate.`,
        { field: 'promptLength' },
      );
    }
  }

  /** Hands one sequence's share of a pass (and its row of the statistics, if any) to its policy runtime. */
  private afterPass(
    seq: Sequence,
    kv: SequenceKv,
    out: DecoderStepOutputs,
    inputs: DecoderStepInputs,
    row: number,
    lengthBefore: readonly number[],
    phase: PassPhase,
  ): void {
    const stats: StatsSlice | null =
      out.attnSum && out.attnRows
        ? {
            row,
            batch: inputs.batch,
            newTokens: inputs.newTokens,
            window: Math.max(1, inputs.attnWindow ?? 1),
            pastWidth: inputs.layers.map((l) => l.capacity),
            lengthBefore,
            attnSum: out.attnSum,
            attnRows: out.attnRows,
          }
        : null;
    seq.runtime.afterPass(kv, { phase, contextTokens: seq.contextTokens(phase === 'decode'), stats });
  }

  private layerLengths(kv: SequenceKv): number[] {
    return Array.from({ length: this.d.spec.numLayers }, (_, l) => kv.length(l));
  }
}
