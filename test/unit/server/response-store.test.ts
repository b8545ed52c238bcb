import t from 'tap';
import assert from 'node:assert/strict';
import { ResponseStore } from '../../../src/server/response-store.js';

t.test('response store: bounded, least recently used evicted first, a lookup counts as a use', async () => {
  const store = new ResponseStore(2);
  store.put('a', [{ role: 'user', content: 'A' }]);
  store.put('b', [{ role: 'user', content: 'B' }]);
  assert.ok(store.get('a'));
  store.put('c', [{ role: 'user', content: 'C' }]);
  assert.equal(store.size, 2);
  assert.equal(store.get('b'), undefined, 'b was the least recently used');
  assert.deepEqual(store.get('a'), [{ role: 'user', content: 'A' }]);
  assert.deepEqual(store.get('c'), [{ role: 'user', content: 'C' }]);
});
