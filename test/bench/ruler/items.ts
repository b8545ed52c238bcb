/**
 * Evaluation items for the long-context CAP table and tests: RULER-style tasks at
 * a target context length, tokenized as the engine receives them (BOS, the
 * context segment, the question segment), and each policy at a budget as the
 * bench and the tests build it from the shipped policy YAML.
 *
 * Seeds are >= 1e9: the training data (tools/train) draws its seeds below 1e9.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TextTokenizer } from '../../../src/model/tokenizer-types.js';
import type { PromptSegment } from '../../../src/policies/compression/types.js';
import { parsePolicyFile, type Policy } from '../../../src/policies/registry.js';
import { generateTask, Haystack, type RulerTask, type TaskItem } from './tasks.js';

export interface EvalItem {
  readonly item: TaskItem;
  readonly promptTokens: readonly number[];
  readonly segments: readonly PromptSegment[];
  /** Tokens a complete answer needs (with slack), for max_tokens. */
  readonly maxTokens: number;
}

/** Every text of at least 100 KB in `dir` as one haystack each. */
export function loadHaystacks(dir: string, tokenizer: TextTokenizer): Haystack[] {
  const count = (s: string): number => tokenizer.encode(s, { addSpecialTokens: false }).length;
  return readdirSync(dir)
    .filter((f) => f.endsWith('.txt'))
    .sort()
    .map((f) => readFileSync(join(dir, f), 'utf8'))
    .filter((t) => t.length > 100_000)
    .map((t) => Haystack.fromText(t, count));
}

const TASK_SEED: Readonly<Record<RulerTask, number>> = { passkey: 1, 'niah-single': 2, 'niah-multikey': 3, 'niah-multivalue': 4, 'niah-multiquery': 5, vt: 6 };

/**
 * `perTask` items of `task` at `contextTokens`, the needle at evenly spaced depths
 * (`depths.from` to `depths.to`, default 0 to 1), haystacks in turn. Deterministic in (task, contextTokens, i).
 */
export function buildItems(
  task: RulerTask,
  contextTokens: number,
  perTask: number,
  haystacks: readonly Haystack[],
  tokenizer: TextTokenizer,
  bosId: number | null,
  depths: { readonly from: number; readonly to: number } = { from: 0, to: 1 },
): EvalItem[] {
  const count = (s: string): number => tokenizer.encode(s, { addSpecialTokens: false }).length;
  const out: EvalItem[] = [];
  for (let i = 0; i < perTask; i++) {
    const hay = haystacks[i % haystacks.length];
    if (!hay) throw new Error('no haystack');
    const depth = depths.from + (depths.to - depths.from) * (perTask === 1 ? 0.5 : i / (perTask - 1));
    const seed = 1_000_000_000 + contextTokens * 100 + TASK_SEED[task] * 10_000_000 + i;
    // Leave room for BOS and the answer.
    let target = contextTokens - 48;
    for (;;) {
      const item = generateTask(task, { targetTokens: target, depth, seed }, hay, count);
      const context = tokenizer.encode(item.context, { addSpecialTokens: false });
      const question = tokenizer.encode(item.question, { addSpecialTokens: false });
      const bos = bosId === null ? [] : [bosId];
      const total = bos.length + context.length + question.length;
      if (total > contextTokens - 48 && target > 64) {
        target -= total - (contextTokens - 48) + 8;
        continue;
      }
      const segments: PromptSegment[] = [
        ...(bos.length ? [{ role: 'other' as const, tokens: bos }] : []),
        { role: 'context', tokens: context },
        { role: 'question', tokens: question },
      ];
      const answerTokens = tokenizer.encode(item.completion, { addSpecialTokens: false }).length;
      out.push({ item, promptTokens: [...bos, ...context, ...question], segments, maxTokens: answerTokens + 4 });
      break;
    }
  }
  return out;
}

export const EVICTION_METHODS = ['streaming-llm', 'h2o', 'snapkv', 'pyramidkv', 'tova', 'knorm'] as const;
export const SPARSE_METHODS = ['quest', 'sink-window'] as const;
export const COMPRESSION_METHODS = ['selective-context', 'llmlingua', 'longllmlingua'] as const;
export const KV_QUANTIZATION_METHODS = ['kivi'] as const;
export const ALL_METHODS = [...EVICTION_METHODS, ...SPARSE_METHODS, ...KV_QUANTIZATION_METHODS, ...COMPRESSION_METHODS] as const;

/**
 * The shipped policy `method` (policies/METHOD.yaml, its other params as shipped)
 * at a budget: the fraction of the prompt kept in the KV cache (eviction), attended
 * per step (Quest) or in each prefill query's window (sink-window), or kept by
 * compression (rate); KIVI keeps every entry, at 8 bits for a budget of 0.5 and
 * above, 4 bits from 0.25, 2 bits below (about the packed bytes per token over fp32's).
 */
export function policyAtBudget(method: string, budget: number, contextTokens: number, policiesDir = 'policies'): Policy {
  const file = join(policiesDir, `${method}.yaml`);
  const base = parsePolicyFile(readFileSync(file, 'utf8'), file);
  const params: Record<string, unknown> = { ...base.params };
  if (base.kind === 'context-compression') params['rate'] = budget;
  else if (base.kind === 'kv-quantization') params['bits'] = budget >= 0.5 ? 8 : budget >= 0.25 ? 4 : 2;
  else if (method === 'sink-window') params['windowTokens'] = Math.max(1, Math.round(budget * contextTokens));
  else params['budget'] = budget;
  if ('topPages' in params) delete params['topPages'];
  // Named by per mille (snapkv-250): policy names are kebab-case.
  const body = JSON.stringify({ name: `${method}-${Math.round(budget * 1000)}`, kind: base.kind, method, params });
  return parsePolicyFile(body, `<${method} at ${budget}>`);
}
