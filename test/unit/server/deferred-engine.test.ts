import test from 'node:test';
import assert from 'node:assert/strict';
import { EngineError } from '../../../src/engine/errors.js';
import { DeferredEngine } from '../../../src/server/deferred-engine.js';
import { ScriptedEngine } from './scripted-engine.js';

test('before the engine is attached: not ready, calls throw not_ready with Retry-After', async () => {
  const deferred = new DeferredEngine();
  assert.deepEqual(deferred.health(), { ready: false, running: 0, waiting: 0, kvBytesUsed: 0, kvBytesCapacity: 0 });
  for (const call of [() => deferred.models(), () => deferred.tokenize('x'), () => deferred.detokenize([1]), () => deferred.renderChat([])]) {
    assert.throws(call, (err: unknown) => err instanceof EngineError && err.code === 'not_ready' && err.retryAfterSeconds === 5);
  }
  await deferred.close();
});

test('after attach: every call reaches the engine', () => {
  const deferred = new DeferredEngine();
  const engine = new ScriptedEngine();
  deferred.attach(engine);
  assert.equal(deferred.health().ready, true);
  assert.equal(deferred.models()[0]?.id, 'scripted');
  assert.deepEqual(deferred.tokenize('A'), [1, 65]);
  assert.equal(deferred.detokenize([72]), 'H');
});
