/**
 * The tokenizer pool gives the same ids and rendered text on its worker threads
 * as inline, keeps the event loop free while it works, and reports template
 * errors as the engine's errors.
 */
import t from 'tap';
import assert from 'node:assert/strict';
import { EngineError } from '../../../src/engine/errors.js';
import { INLINE_CHARS, INLINE_IDS, TokenizerPool } from '../../../src/engine/tokenizer-pool.js';
import { resolveChatTemplateFallback } from '../../../src/server/chat-template-fallback.js';
import { missingShared, STORIES_DIR } from '../../helpers/shared.js';

const skip = missingShared('models', 'stories260K') ?? false;
const TEXT = 'Once upon a time, a little girl named Lily found a shiny red ball in the park. ';

t.test('large inputs go to a worker thread and give exactly the inline result; the event loop keeps turning', { skip }, async (t) => {
  const pool = new TokenizerPool({ modelDir: STORIES_DIR, modelId: 'stories', chatTemplateFallback: resolveChatTemplateFallback('chatml') ?? undefined });
  t.after(() => pool.close());
  const big = TEXT.repeat(2000);
  assert.ok(big.length > INLINE_CHARS);
  let ticks = 0;
  const timer = setInterval(() => ticks++, 5);
  const viaWorker = await pool.encode(big, true);
  clearInterval(timer);
  assert.deepEqual(viaWorker, pool.inline.encode(big, true));
  assert.ok(ticks > 0, 'timers ran while the worker tokenized');
  const messages = [
    { role: 'system' as const, content: 'You tell stories.' },
    { role: 'user' as const, content: big },
  ];
  assert.deepEqual(await pool.render(messages), pool.inline.render(messages));
  assert.deepEqual(await pool.encode(TEXT, false), pool.inline.encode(TEXT, false), 'small inputs run inline');
  // Decoding: ids past int32 and the vocabulary travel unchanged and decode as they do inline.
  const ids = [...viaWorker, 2 ** 40, 5];
  assert.ok(ids.length > INLINE_IDS);
  ticks = 0;
  const decodeTimer = setInterval(() => ticks++, 5);
  const decoded = await pool.decode(ids);
  clearInterval(decodeTimer);
  assert.equal(decoded, pool.inline.decode(ids));
  assert.ok(decoded.startsWith(TEXT.trim()), decoded.slice(0, 100));
  assert.ok(ticks > 0, 'timers ran while the worker decoded');
  assert.equal(await pool.decode(viaWorker.slice(0, 10)), pool.inline.decode(viaWorker.slice(0, 10)), 'short id lists decode inline');
});

t.test('a model without a chat template: the worker reports no_chat_template as an EngineError', { skip }, async (t) => {
  const pool = new TokenizerPool({ modelDir: STORIES_DIR, modelId: 'stories' });
  t.after(() => pool.close());
  await assert.rejects(
    pool.render([{ role: 'user', content: TEXT.repeat(100) }]),
    (err: unknown) => err instanceof EngineError && err.code === 'no_chat_template',
  );
});
