/** A small chat prompt for method tests: template, system message, four context paragraphs, a question. */
import type { CompressionInput, PromptSegment } from '../../../../src/policies/compression/types.js';
import { DEFAULT_QUESTION_SUFFIX } from '../../../../src/policies/compression/longllmlingua.js';
import { paragraphUnits, tokenPieces } from '../../../../src/policies/compression/text-units.js';
import { FakeScorer, hashedSurprisal, WordTokenizer } from './fakes.js';

export const SYSTEM = 'You are a careful assistant. Answer from the documents only.';
export const PARAGRAPHS = [
  'The cat sat on the mat. The cat sat on the mat again, and the cat sat on the mat once more.\n\n',
  'Lily found a silver needle under the old oak table. She sewed a blue button on her coat with the needle.\n\n',
  'The weather was warm, so the children played outside in the park until the sun went down.\n\n',
  'A small dog barked at the mailman, who laughed and gave the dog a treat from his bag.',
];
export const QUESTION = 'Where did Lily find the silver needle?';
export const HEAD = '<s> SYSTEM:';
export const MID = ' USER:';
export const TAIL = ' ASSISTANT:';

export const tokenizer = new WordTokenizer(
  HEAD,
  ` ${SYSTEM}`,
  MID,
  ` ${QUESTION}`,
  TAIL,
  ...PARAGRAPHS.map((p) => ` ${p}`),
  ...PARAGRAPHS.map((p) => `\n\n${p}`),
  DEFAULT_QUESTION_SUFFIX,
);

export function scorer(): FakeScorer {
  return new FakeScorer(tokenizer.vocabSize, hashedSurprisal);
}

const enc = (t: string): number[] => tokenizer.encode(t);

/** Segments: [other HEAD][system][other MID][context paragraphs][question][other TAIL]. */
export function chatInput(paragraphs: readonly string[] = PARAGRAPHS): CompressionInput {
  const segments: PromptSegment[] = [
    { role: 'other', tokens: enc(HEAD) },
    { role: 'system', tokens: enc(` ${SYSTEM}`) },
    { role: 'other', tokens: enc(MID) },
    { role: 'context', tokens: enc(` ${paragraphs.join('')}`) },
    { role: 'question', tokens: enc(` ${QUESTION}`) },
    { role: 'other', tokens: enc(TAIL) },
  ];
  return { segments };
}

export const CONTEXT_SEGMENT = 3;

/** Per token of segment `si`, 1 when kept, from the result's dropped spans (positions are exact even with repeated ids). */
export function keptMask(length: number, dropped: readonly { segment: number; start: number; end: number }[], si: number): Uint8Array {
  const mask = new Uint8Array(length).fill(1);
  for (const d of dropped) if (d.segment === si) mask.fill(0, d.start, d.end);
  return mask;
}

/** Paragraph index of each token of the context segment (tested on its own in text-units.test). */
export function paragraphOf(input: CompressionInput): number[] {
  const ctx = input.segments[CONTEXT_SEGMENT]?.tokens ?? [];
  return [...paragraphUnits(tokenPieces(ctx, tokenizer)).unitOf];
}
