import t from 'tap';
import assert from 'node:assert/strict';
import { EngineError } from '../../../src/engine/errors.js';
import { DeferredEngine } from '../../../src/server/deferred-engine.js';
import { ScriptedEngine } from './scripted-engine.js';

t.test('before the engine is attached: not ready, calls throw not_ready with Retry-After', async () => {
  const deferred = new DeferredEngine();
  assert.deepEqual(deferred.health(), { ready: false, running: 0, waiting: 0, kvBytesUsed: 0, kvBytesCapacity: 0 });
  const notReady = (err: unknown): boolean => err instanceof EngineError && err.code === 'not_ready' && err.retryAfterSeconds === 5;
  assert.throws(() => deferred.models(), notReady);
  await assert.rejects(deferred.tokenize('x'), notReady);
  await assert.rejects(deferred.detokenize([1]), notReady);
  await assert.rejects(deferred.renderChat([]), notReady);
  await deferred.close();
});

t.test('after attach: every call reaches the engine', async () => {
  const deferred = new DeferredEngine();
  const engine = new ScriptedEngine();
  deferred.attach(engine);
  assert.equal(deferred.health().ready, true);
  assert.equal(deferred.models()[0]?.id, 'scripted');
  assert.deepEqual(await deferred.tokenize('A'), [1, 65]);
  assert.equal(await deferred.detokenize([72]), 'H');
});
