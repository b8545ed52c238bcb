import assert from 'node:assert/strict';
import t from 'tap';
import { COMPRESSION_METHODS } from '../../../../src/policies/compression/index.js';
import { ContextLengthExceededError, handleOverflow } from '../../../../src/policies/overflow/index.js';
import { chatInput, CONTEXT_SEGMENT, scorer, tokenizer } from '../compression/corpus.js';
import { params } from '../compression/params.js';

const total = chatInput().segments.reduce((a, s) => a + s.tokens.length, 0);

for (const method of COMPRESSION_METHODS) {
  t.test(`compress mode with ${method.method}: the prompt is brought within window - max_tokens, protected parts intact`, async () => {
    const input = chatInput();
    const contextWindow = total;
    const maxTokens = 40;
    const r = await handleOverflow(
      { segments: input.segments, contextWindow, maxTokens },
      { mode: 'compress', policy: `${method.method}-test` },
      {
        compressionPolicy: (name) => (name === `${method.method}-test` ? { name, method, params: params(method.schema, { rate: 0.9 }) } : undefined),
        scorer: scorer(),
        tokenizer,
      },
    );
    const budget = contextWindow - maxTokens;
    assert.ok(r.tokens.length <= budget, `${r.tokens.length} > ${budget}`);
    assert.equal(r.report.mode, 'compress');
    assert.equal(r.report.applied, true);
    assert.equal(r.report.tokensBefore, total);
    assert.equal(r.report.tokensAfter, r.tokens.length);
    assert.equal(r.report.dropped, total - r.tokens.length);
    assert.equal(r.report.detail['method'], method.method);
    assert.ok(typeof r.report.detail['rate'] === 'number' && r.report.detail['rate'] < 1);
    assert.ok(r.compression !== null && r.compression.dropped.length > 0);
    input.segments.forEach((s, i) => {
      if (i !== CONTEXT_SEGMENT) assert.deepEqual(r.segments[i]?.tokens, s.tokens);
    });
  });
}

t.test('compress mode: when the protected parts alone exceed the budget the error says so', async () => {
  const input = chatInput();
  const protectedTokens = total - (input.segments[CONTEXT_SEGMENT]?.tokens.length ?? 0);
  const method = COMPRESSION_METHODS[0];
  assert.ok(method !== undefined);
  await assert.rejects(
    handleOverflow(
      { segments: input.segments, contextWindow: protectedTokens + 5, maxTokens: 10 },
      { mode: 'compress', policy: 'sc' },
      { compressionPolicy: () => ({ name: 'sc', method, params: params(method.schema) }), scorer: scorer(), tokenizer },
    ),
    (e: unknown) => e instanceof ContextLengthExceededError && /the parts it must keep take \d+ of the \d+ available/.test(e.message),
  );
});
