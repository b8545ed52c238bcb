import assert from 'node:assert/strict';
import t from 'tap';
import {
  ContextLengthExceededError,
  evictDecision,
  fits,
  handleOverflow,
  normalizeOverflow,
  overflowError,
  protectedHead,
  shiftPrompt,
  truncatePrompt,
} from '../../../../src/policies/overflow/index.js';
import { chat, prompt, range } from './prompt.js';

const input = (contextWindow: number, maxTokens: number) => ({ segments: chat(), contextWindow, maxTokens });

t.test('error: the message states the window and both numbers, with OpenAI wording', async () => {
  const err = overflowError(input(100, 20));
  assert.ok(err instanceof ContextLengthExceededError);
  assert.equal(err.code, 'context_length_exceeded');
  assert.equal(err.statusCode, 400);
  assert.equal(err.promptTokens, 121);
  assert.equal(err.maxTokens, 20);
  assert.equal(err.requestedTokens, 141);
  assert.equal(
    err.message,
    "This model's maximum context length is 100 tokens. However, you requested 141 tokens (121 in the messages, 20 in the completion). Please reduce the length of the messages or completion.",
  );
});

t.test('handleOverflow error mode: passes a fitting prompt through, throws otherwise', async () => {
  const ok = await handleOverflow(input(200, 20), { mode: 'error' });
  assert.equal(ok.report.applied, false);
  assert.equal(ok.report.tokensAfter, 121);
  await assert.rejects(
    handleOverflow(input(130, 20), { mode: 'error' }),
    (e: unknown) => e instanceof ContextLengthExceededError && e.promptTokens === 121 && e.contextWindow === 130,
  );
});

t.test('protectedHead: BOS + system message + its end marker; without system, the leading template segment', async () => {
  assert.equal(protectedHead(chat()), 8);
  assert.equal(protectedHead(prompt(['other', 2], ['context', 10])), 2);
  assert.equal(protectedHead(prompt(['context', 10])), 0);
  assert.equal(protectedHead(prompt(['system', 4], ['context', 10])), 4);
});

t.test('truncate left: drops exactly the oldest tokens after the system message', async () => {
  const r = truncatePrompt(input(100, 20), 'left');
  // budget 80, excess 41: tokens 8..48 go.
  assert.deepEqual(r.tokens, [...range(0, 8), ...range(49, 121)]);
  assert.equal(r.tokens.length, 80);
  assert.deepEqual(r.report, {
    mode: 'truncate',
    applied: true,
    tokensBefore: 121,
    tokensAfter: 80,
    dropped: 41,
    contextWindow: 100,
    maxTokens: 20,
    detail: { side: 'left' },
  });
  assert.deepEqual(
    r.segments.map((s) => s.tokens.length),
    [1, 5, 2, 59, 10, 3],
  );
  assert.deepEqual(r.segments[1]?.tokens, range(1, 6));
});

t.test('truncate middle: keeps both ends after the system message', async () => {
  const r = truncatePrompt(input(100, 20), 'middle');
  // rest after head: 113 tokens, keep 72: first 36 and last 36.
  assert.deepEqual(r.tokens, [...range(0, 8), ...range(8, 44), ...range(85, 121)]);
  assert.equal(r.report.dropped, 41);
  assert.equal(r.report.detail['side'], 'middle');
});

t.test('truncate: a fitting prompt is untouched; a system message that alone overflows is an error naming it', async () => {
  const same = truncatePrompt(input(500, 20), 'left');
  assert.equal(same.report.applied, false);
  assert.deepEqual(same.tokens, range(0, 121));
  assert.throws(() => truncatePrompt(input(27, 20), 'left'), /the system message, which with the template takes 8 tokens of the 7 available/);
  assert.throws(() => truncatePrompt(input(20, 20), 'left'), /max_tokens alone fills the window/);
});

t.test('shift: keeps n_keep, discards the oldest after it in blocks of half the remaining room (llama.cpp)', async () => {
  // budget 80, n_keep 8: block = (80 - 8) / 2 = 36; excess 41 -> 2 blocks = 72 tokens.
  const r = shiftPrompt(input(100, 20), 'system');
  assert.deepEqual(r.tokens, [...range(0, 8), ...range(80, 121)]);
  assert.deepEqual(r.report.detail, { keep: 8, block: 36, blocks: 2 });
  assert.equal(r.report.dropped, 72);
  assert.ok(r.tokens.length <= 80);
  const n = shiftPrompt(input(100, 20), 0);
  // n_keep 0: block 40, 2 blocks = 80 tokens dropped from the start.
  assert.deepEqual(n.tokens, range(80, 121));
  const one = shiftPrompt(input(120, 0), 4);
  // budget 120, excess 1, block 58: one block.
  assert.deepEqual(one.tokens, [...range(0, 4), ...range(62, 121)]);
  assert.throws(() => shiftPrompt(input(100, 20), 90), /keeps the first 90 tokens, more than the 80 available/);
  assert.throws(() => shiftPrompt(input(100, 20), -1), RangeError);
});

t.test('evict: a decision record; the prompt is untouched and the policy is named', async () => {
  const r = evictDecision(input(100, 20), 'streaming-llm');
  assert.equal(r.evictPolicy, 'streaming-llm');
  assert.equal(r.report.applied, true);
  assert.equal(r.report.tokensAfter, 121);
  assert.equal(r.report.dropped, 0);
  assert.deepEqual(r.report.detail, { policy: 'streaming-llm', kvTokenLimit: 100 });
  const fitting = evictDecision(input(1000, 20), 'streaming-llm');
  assert.equal(fitting.report.applied, false);
});

t.test('handleOverflow dispatches every mode; bad numbers are rejected', async () => {
  assert.equal((await handleOverflow(input(100, 20), { mode: 'truncate', side: 'left' })).tokens.length, 80);
  assert.equal((await handleOverflow(input(100, 20), { mode: 'shift', keep: 'system' })).tokens.length, 49);
  assert.equal((await handleOverflow(input(100, 20), { mode: 'evict', policy: 'h2o' })).evictPolicy, 'h2o');
  await assert.rejects(handleOverflow(input(100, 20), { mode: 'compress', policy: 'nope' }), /no context-compression policy named "nope"/);
  await assert.rejects(handleOverflow({ segments: chat(), contextWindow: 0, maxTokens: 1 }, { mode: 'error' }), RangeError);
  await assert.rejects(handleOverflow({ segments: chat(), contextWindow: 10, maxTokens: 1.5 }, { mode: 'error' }), RangeError);
  assert.equal(fits(input(141, 20)), true);
  assert.equal(fits(input(140, 20)), false);
});

t.test('normalizeOverflow fills defaults for bare modes and objects', async () => {
  assert.deepEqual(normalizeOverflow('error'), { mode: 'error' });
  assert.deepEqual(normalizeOverflow('truncate'), { mode: 'truncate', side: 'left' });
  assert.deepEqual(normalizeOverflow('shift'), { mode: 'shift', keep: 'system' });
  assert.deepEqual(normalizeOverflow({ mode: 'truncate', side: 'middle' }), { mode: 'truncate', side: 'middle' });
  assert.deepEqual(normalizeOverflow({ mode: 'shift', keep: 16 }), { mode: 'shift', keep: 16 });
  assert.deepEqual(normalizeOverflow({ mode: 'compress', policy: 'llmlingua' }), { mode: 'compress', policy: 'llmlingua' });
});
