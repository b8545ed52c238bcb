import assert from 'node:assert/strict';
import t from 'tap';
import { ExpertCache } from '../../../../src/kv/expert-cache.js';

function fill(cache: ExpertCache<string>, keys: number[], bytes = 10): void {
  for (const k of keys) {
    cache.touch(k);
    assert.ok(cache.admit(k, `v${k}`, bytes), `admit ${k}`);
  }
}

t.test('lru evicts the least recently used entry first', async () => {
  const c = new ExpertCache<string>(30, 'lru');
  fill(c, [1, 2, 3]);
  c.touch(1); // 2 is now the oldest
  c.touch(4);
  const r = c.admit(4, 'v4', 10);
  assert.deepEqual(
    r?.evicted.map((e) => e.key),
    [2],
  );
  c.touch(5);
  assert.deepEqual(
    c.admit(5, 'v5', 10)?.evicted.map((e) => e.key),
    [3],
  );
  assert.deepEqual(c.keys().sort(), [1, 4, 5]);
  assert.equal(c.evictions, 2);
});

t.test('frequency evicts the least used entry, ties to the least recent, and remembers evicted experts', async () => {
  const c = new ExpertCache<string>(30, 'frequency');
  fill(c, [1, 2, 3]);
  for (let i = 0; i < 3; i++) c.touch(1);
  c.touch(2);
  // counts: 1 -> 4, 2 -> 2, 3 -> 1: 3 goes first even though 1 is older than 3 in recency order
  c.touch(4);
  assert.deepEqual(
    c.admit(4, 'v4', 10)?.evicted.map((e) => e.key),
    [3],
  );
  // 4 has count 1, 2 has 2: 4 goes next
  c.touch(5);
  c.touch(5);
  c.touch(5);
  assert.deepEqual(
    c.admit(5, 'v5', 10)?.evicted.map((e) => e.key),
    [4],
  );
  // 3 comes back with its history (1 + 1 use) and now ties with 2 (2 uses): the less recent (2) goes
  c.touch(3);
  assert.equal(c.frequency(3), 2);
  assert.deepEqual(
    c.admit(3, 'v3', 10)?.evicted.map((e) => e.key),
    [2],
  );
});

t.test('frequency counts decay so a shift in routing wins over old popularity', async () => {
  const c = new ExpertCache<string>(20, 'frequency', 8);
  fill(c, [1, 2]);
  for (let i = 0; i < 10; i++) c.touch(1);
  // 11 uses of expert 1, halved once at the 8th use overall
  assert.equal(c.frequency(1), 7 / 2 + 4);
});

t.test('pinned entries are never evicted; an admission that cannot fit changes nothing', async () => {
  const c = new ExpertCache<string>(30, 'lru');
  fill(c, [1, 2, 3]);
  c.pin(1);
  c.pin(2);
  c.touch(4);
  assert.deepEqual(
    c.admit(4, 'v4', 10)?.evicted.map((e) => e.key),
    [3],
  );
  c.pin(4);
  assert.equal(c.admit(5, 'v5', 10), null, 'everything pinned');
  assert.deepEqual(c.keys().sort(), [1, 2, 4]);
  assert.equal(c.admit(6, 'v6', 31), null, 'larger than the budget');
  c.unpin(2);
  assert.deepEqual(
    c.admit(5, 'v5', 10)?.evicted.map((e) => e.key),
    [2],
  );
});

t.test('resident bytes never exceed the budget under random traffic with mixed sizes', async () => {
  let seed = 7;
  const rand = (n: number): number => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed % n;
  };
  for (const policy of ['lru', 'frequency'] as const) {
    const c = new ExpertCache<number>(100, policy);
    for (let i = 0; i < 2000; i++) {
      const k = rand(40);
      c.touch(k);
      if (!c.has(k)) c.admit(k, k, 5 + (k % 7) * 9);
      if (rand(5) === 0) c.pin(k);
      if (rand(3) === 0) c.unpin(rand(40));
      assert.ok(c.residentBytes <= 100, `${policy}: ${c.residentBytes} bytes resident`);
    }
  }
  assert.throws(() => new ExpertCache(-1, 'lru'), /non-negative/);
});
