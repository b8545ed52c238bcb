/**
 * RULER-style long-context tasks (Hsieh et al. 2024, "RULER: What's the Real Context
 * Size of Your Long-Context Language Models?"), generated deterministically from a
 * seed: passkey, needle-in-a-haystack (single, multi-key, multi-value, multi-query)
 * and variable tracking, hidden in real text haystacks.
 *
 * Contract: `generateTask(task, options, haystack, countTokens)` returns a prompt
 * whose token count (as `countTokens` measures it) is at most `targetTokens`, and the
 * strings a correct answer must contain. The same generator builds the long-context
 * model's training data (tools/train) and the bench's evaluation items, so the model
 * is trained on the distribution it is measured on (with disjoint seeds).
 *
 * Templates follow RULER's (synthetic.yaml) with the answer prefix appended to the
 * prompt, as RULER does for base models.
 */
import { Rng } from '../../../src/model/create/prng.js';

export const RULER_TASKS = ['passkey', 'niah-single', 'niah-multikey', 'niah-multivalue', 'niah-multiquery', 'vt'] as const;
export type RulerTask = (typeof RULER_TASKS)[number];

export interface TaskOptions {
  /** Upper bound on the prompt's token count. */
  readonly targetTokens: number;
  /** Where the (first) needle sits in the haystack, 0 = start, 1 = end. */
  readonly depth: number;
  readonly seed: number;
}

export interface TaskItem {
  readonly task: RulerTask;
  readonly prompt: string;
  /** The prompt is `${context} ${question}`: the haystack part and the query with its answer prefix. */
  readonly context: string;
  readonly question: string;
  /** Every string here must appear in the completion (RULER's string_match_all). */
  readonly answers: readonly string[];
  /** The text a perfect model continues with (for training: the completion). */
  readonly completion: string;
  readonly depth: number;
  readonly seed: number;
}

/** Counts tokens of a piece of text as the model's tokenizer does (without special tokens). */
export type CountTokens = (text: string) => number;

/** Sentences of real text, normalized to single spaces, with cached token counts. */
export class Haystack {
  private readonly counts = new Map<number, number>();

  constructor(
    readonly sentences: readonly string[],
    private readonly countTokens: CountTokens,
  ) {
    if (sentences.length < 100) throw new Error(`haystack has only ${sentences.length} sentences`);
  }

  static fromText(text: string, countTokens: CountTokens): Haystack {
    const normalized = text.replace(/\r/g, '').replace(/_/g, '').replace(/\s+/g, ' ').trim();
    const sentences = normalized
      .split(/(?<=[.!?]["']?)\s+(?=["']?[A-Z])/)
      .map((s) => s.trim())
      .filter((s) => s.length >= 8 && s.length <= 600);
    return new Haystack(sentences, countTokens);
  }

  tokensOf(index: number): number {
    let n = this.counts.get(index);
    if (n === undefined) {
      n = this.countTokens(this.sentences[index] ?? '');
      this.counts.set(index, n);
    }
    return n;
  }

  /** Consecutive sentences from a random start, wrapping, totalling at most `budget` tokens. */
  take(rng: Rng, budget: number): string[] {
    const out: string[] = [];
    let start = rng.nextU32() % this.sentences.length;
    let used = 0;
    for (let guard = 0; guard < this.sentences.length; guard++) {
      const n = this.tokensOf(start) + 1;
      if (used + n > budget) break;
      out.push(this.sentences[start] ?? '');
      used += n;
      start = (start + 1) % this.sentences.length;
    }
    return out;
  }
}

const KEY_WORDS = [
  'apple',
  'river',
  'garden',
  'rabbit',
  'candle',
  'window',
  'forest',
  'pencil',
  'button',
  'dragon',
  'flower',
  'castle',
  'rocket',
  'basket',
  'turtle',
  'cookie',
  'mirror',
  'ladder',
  'pirate',
  'island',
  'banana',
  'kitten',
  'puppy',
  'cloud',
  'summer',
  'winter',
  'orange',
  'yellow',
  'silver',
  'purple',
  'little',
  'happy',
  'sleepy',
  'brave',
  'quiet',
  'shiny',
  'bird',
  'tree',
  'boat',
  'ball',
  'star',
  'moon',
  'lamp',
  'door',
  'cake',
  'frog',
  'bear',
  'fish',
  'duck',
  'king',
  'queen',
  'train',
  'truck',
  'horse',
  'zebra',
  'tiger',
  'lion',
  'snake',
  'mouse',
  'owl',
  'sun',
  'rain',
  'snow',
  'wind',
] as const;

function pick<T>(rng: Rng, items: readonly T[]): T {
  const item = items[rng.nextU32() % items.length];
  if (item === undefined) throw new Error('pick from an empty list');
  return item;
}

function digits(rng: Rng, n: number): string {
  let s = String(1 + (rng.nextU32() % 9));
  for (let i = 1; i < n; i++) s += String(rng.nextU32() % 10);
  return s;
}

function distinct<T>(rng: Rng, n: number, make: (rng: Rng) => T): T[] {
  const out: T[] = [];
  for (let guard = 0; out.length < n && guard < 1000; guard++) {
    const v = make(rng);
    if (!out.includes(v)) out.push(v);
  }
  if (out.length < n) throw new Error(`could not draw ${n} distinct values`);
  return out;
}

const keyOf = (rng: Rng): string => `${pick(rng, KEY_WORDS)}-${pick(rng, KEY_WORDS)}`;
const varName = (rng: Rng): string => {
  let s = '';
  for (let i = 0; i < 5; i++) s += String.fromCharCode(65 + (rng.nextU32() % 26));
  return s;
};

interface Spec {
  readonly intro: string;
  readonly needles: readonly string[];
  /** Depths of the needles after the first (which sits at the requested depth). */
  readonly query: string;
  readonly answers: readonly string[];
  readonly completion: string;
}

const NIAH_INTRO = 'Some special magic numbers are hidden within the following text. Make sure to memorize it. I will quiz you about the numbers afterwards.';
const niahNeedle = (key: string, value: string): string => `One of the special magic numbers for ${key} is: ${value}.`;

function specFor(task: RulerTask, rng: Rng): Spec {
  switch (task) {
    case 'passkey': {
      const value = digits(rng, 5);
      return {
        intro:
          'There is an important info hidden inside a lot of irrelevant text. Find it and memorize it. I will quiz you about the important information there.',
        needles: [`The pass key is ${value}. Remember it. ${value} is the pass key.`],
        query: 'What is the pass key? The pass key is',
        answers: [value],
        completion: ` ${value}.`,
      };
    }
    case 'niah-single':
    case 'niah-multikey': {
      const keys = distinct(rng, task === 'niah-single' ? 1 : 3, keyOf);
      const values = distinct(rng, keys.length, (r) => digits(r, 7));
      const key = keys[0] ?? '';
      const value = values[0] ?? '';
      return {
        intro: NIAH_INTRO,
        needles: keys.map((k, i) => niahNeedle(k, values[i] ?? '')),
        query: `What is the special magic number for ${key} mentioned in the provided text? The special magic number for ${key} mentioned in the provided text is`,
        answers: [value],
        completion: ` ${value}.`,
      };
    }
    case 'niah-multivalue': {
      const key = keyOf(rng);
      const values = distinct(rng, 4, (r) => digits(r, 7));
      return {
        intro: NIAH_INTRO,
        needles: values.map((v) => niahNeedle(key, v)),
        query: `What are all the special magic numbers for ${key} mentioned in the provided text? The special magic numbers for ${key} mentioned in the provided text are`,
        answers: values,
        completion: ` ${values.join(', ')}.`,
      };
    }
    case 'niah-multiquery': {
      const keys = distinct(rng, 4, keyOf);
      const values = distinct(rng, 4, (r) => digits(r, 7));
      const list = `${keys.slice(0, -1).join(', ')}, and ${keys[keys.length - 1] ?? ''}`;
      return {
        intro: NIAH_INTRO,
        needles: keys.map((k, i) => niahNeedle(k, values[i] ?? '')),
        query: `What are all the special magic numbers for ${list} mentioned in the provided text? The special magic numbers for ${list} mentioned in the provided text are`,
        answers: values,
        completion: ` ${values.join(', ')}.`,
      };
    }
    case 'vt': {
      const names = distinct(rng, 4, varName);
      const value = digits(rng, 5);
      const needles = names.map((n, i) => (i === 0 ? `VAR ${n} = ${value}.` : `VAR ${n} = VAR ${names[i - 1] ?? ''}.`));
      return {
        intro: 'Memorize and track the chain(s) of variable assignment hidden in the following text.',
        needles,
        query: `Question: Find all variables that are assigned the value ${value} in the text above. Answer: According to the chain(s) of variables assignment in the text above, ${names.length} variables are assigned the value ${value}, they are:`,
        answers: names,
        completion: ` ${names.join(' ')}.`,
      };
    }
  }
}

/**
 * One task item. The first needle sits at `depth`; further needles at seeded depths
 * (in order for variable tracking, whose chain must be read forwards).
 */
export function generateTask(task: RulerTask, options: TaskOptions, haystack: Haystack, countTokens: CountTokens): TaskItem {
  const rng = new Rng(options.seed, 0x5ee1);
  const spec = specFor(task, rng);
  const fixed = countTokens(spec.intro) + countTokens(spec.query) + spec.needles.reduce((a, n) => a + countTokens(n) + 1, 0) + 4;
  const budget = options.targetTokens - fixed;
  if (budget < 0) throw new Error(`${task} needs at least ${fixed} tokens; target is ${options.targetTokens}`);
  const sentences = haystack.take(rng, budget);
  const depth = Math.min(1, Math.max(0, options.depth));
  const depths = [depth];
  for (let i = 1; i < spec.needles.length; i++) depths.push((rng.nextU32() % 10_000) / 10_000);
  if (task === 'vt') depths.sort((a, b) => a - b);
  // Insert from the deepest so earlier insertion points stay valid.
  const placed = spec.needles.map((needle, i) => ({ needle, at: Math.round((depths[i] ?? 0) * sentences.length), order: i }));
  placed.sort((a, b) => b.at - a.at || b.order - a.order);
  const body = [...sentences];
  for (const p of placed) body.splice(p.at, 0, p.needle);
  const context = `${spec.intro} ${body.join(' ')}`;
  const prompt = `${context} ${spec.query}`;
  return { task, prompt, context, question: spec.query, answers: spec.answers, completion: spec.completion, depth, seed: options.seed };
}

/** RULER's string_match_all: the share of answers that appear in the completion. */
export function scoreCompletion(item: TaskItem, completion: string): number {
  if (item.answers.length === 0) return 0;
  let hits = 0;
  for (const a of item.answers) if (completion.includes(a)) hits++;
  return hits / item.answers.length;
}
