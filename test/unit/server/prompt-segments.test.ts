/**
 * Chat and completion prompts as role-tagged segments, on a real
 * SentencePiece tokenizer (stories260K, whose encode adds a dummy "▁" prefix
 * to every call) with the ChatML template: roles land where the contents are,
 * and the segments' concatenation equals the whole-text tokenization.
 */
import t from 'tap';
import assert from 'node:assert/strict';
import { loadChatTemplate } from '../../../src/model/chat-template.js';
import { loadTokenizer } from '../../../src/model/tokenizer.js';
import type { ChatMessage } from '../../../src/model/tokenizer-types.js';
import { resolveChatTemplateFallback } from '../../../src/server/chat-template-fallback.js';
import { chatSegments, completionSegments, concatSegments, encodePiece, locateContents, specialAffixes } from '../../../src/server/prompt-segments.js';
import { missingShared, STORIES_DIR } from '../../helpers/shared.js';

const skip = missingShared('models', 'stories260K') ?? false;

interface Stories {
  tokenize: (text: string, options?: { addSpecialTokens?: boolean }) => Promise<number[]>;
  render: (m: readonly ChatMessage[]) => Promise<string>;
  decode: (ids: readonly number[]) => string;
}

function stories(): Stories {
  const tokenizer = loadTokenizer(STORIES_DIR);
  const template = loadChatTemplate(STORIES_DIR, resolveChatTemplateFallback('chatml') ?? undefined);
  assert.ok(template !== null);
  return {
    tokenize: async (text, options) => tokenizer.encode(text, { addSpecialTokens: options?.addSpecialTokens ?? true }),
    render: async (m) => template.render(m, { addGenerationPrompt: true }),
    decode: (ids) => tokenizer.decode(ids),
  };
}

const MESSAGES: ChatMessage[] = [
  { role: 'system', content: 'You are a storyteller.' },
  { role: 'user', content: 'Once upon a time there was a little girl named Lily. She liked to play outside.' },
  { role: 'assistant', content: 'One day she found a big red ball in the park.' },
  { role: 'user', content: 'What did Lily do with the ball?' },
];

t.test('chat: system, context, question and template scaffolding, concatenating to the whole-text tokens', { skip }, async () => {
  const s = stories();
  const text = await s.render(MESSAGES);
  const segments = await chatSegments(s, s.render, MESSAGES, { text, addSpecialTokens: true });
  assert.deepEqual(
    segments.map((g) => g.role),
    ['other', 'system', 'other', 'context', 'other', 'context', 'other', 'question', 'other'],
  );
  assert.deepEqual(concatSegments(segments), await s.tokenize(text, { addSpecialTokens: true }), 'anchored pieces reproduce the whole-text tokenization');
  assert.deepEqual(await specialAffixes(s), { prefix: [1], suffix: [] });
  assert.equal(segments[0]?.tokens[0], 1, 'BOS is template scaffolding');
  assert.equal(s.decode(segments[1]?.tokens ?? []), 'You are a storyteller.');
  assert.equal(s.decode(segments[7]?.tokens ?? []), 'What did Lily do with the ball?');
  assert.match(s.decode(segments[8]?.tokens ?? []), /<\|im_end\|>\s*<\|im_start\|>assistant/);
});

t.test('a piece encoded alone gets the dummy prefix; encoded after the anchor it does not', { skip }, async () => {
  const s = stories();
  const alone = await s.tokenize('Once upon a time', { addSpecialTokens: false });
  const inText = await s.tokenize('user\nOnce upon a time', { addSpecialTokens: false });
  assert.notDeepEqual(inText.slice(-alone.length), alone, 'the seam matters for this tokenizer');
  const piece = await encodePiece(s, 'Once upon a time', false);
  assert.deepEqual(inText.slice(-piece.length), piece);
  assert.deepEqual(await encodePiece(s, 'Once upon a time', true), alone, 'the text start keeps the prefix, as the whole text does');
});

t.test('contents are found by re-rendering with markers, else by search; a template that rewrites contents falls back', async () => {
  const messages: ChatMessage[] = [
    { role: 'user', content: 'user' },
    { role: 'assistant', content: 'ok' },
  ];
  // A content equal to a role name: a naive search would find it inside the first role marker.
  const render = (m: readonly ChatMessage[]): string => m.map((x) => `[${x.role}] ${x.content}\n`).join('') + '[assistant] ';
  const text = render(messages);
  assert.deepEqual(await locateContents(async (m) => render(m), messages, text), [
    { message: 0, start: 7, end: 11 },
    { message: 1, start: 24, end: 26 },
  ]);
  const trimming = (m: readonly ChatMessage[]): string => m.map((x) => `<${x.role}>${x.content.trim().toUpperCase()}`).join('');
  const spaced: ChatMessage[] = [{ role: 'user', content: '  hello  ' }];
  // Markers do not survive toUpperCase + rebuild, and the content is changed: nothing is found, it stays scaffolding.
  assert.deepEqual(await locateContents(async (m) => trimming(m), spaced, trimming(spaced)), []);
  const trimOnly = (m: readonly ChatMessage[]): string => m.map((x) => `<${x.role}>${x.content.trim()}`).join('');
  assert.deepEqual(await locateContents(async (m) => trimOnly(m), spaced, trimOnly(spaced)), [{ message: 0, start: 6, end: 11 }]);
});

t.test('completions: BOS is scaffolding, the rest one context segment; token-id prompts without BOS are all context', async () => {
  const tok = {
    tokenize: async (text: string, options?: { addSpecialTokens?: boolean }): Promise<number[]> => {
      const ids = [...text].map((c) => c.charCodeAt(0));
      return options?.addSpecialTokens === false ? ids : [1, ...ids, 2];
    },
  };
  assert.deepEqual(await completionSegments(tok, [1, 70, 71, 2]), [
    { role: 'other', tokens: [1] },
    { role: 'context', tokens: [70, 71] },
    { role: 'other', tokens: [2] },
  ]);
  assert.deepEqual(await completionSegments(tok, [70, 71]), [{ role: 'context', tokens: [70, 71] }]);
});
