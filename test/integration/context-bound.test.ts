/** The worker serves a context length the KV budget can hold, and its start log says so (model.contextLength 1e9 here, max_position_embeddings 1e15 alike). */
import t from 'tap';
import assert from 'node:assert/strict';
import { createLocalEngine } from '../../src/engine/local-engine.js';
import { TEST_CACHE_DIR } from '../helpers/session.js';
import { storiesModelDir } from './server-harness.js';

const modelDir = storiesModelDir();
const skip = modelDir === null ? 'stories260K not found (set CAPSERVE_SHARED to the shared folder)' : false;

t.test('a context length beyond the KV budget is bounded at start, in one progress line', { skip }, async () => {
  const progress: string[] = [];
  const engine = await createLocalEngine({
    modelDir: modelDir ?? '',
    cacheDir: TEST_CACHE_DIR,
    threads: 1,
    kvBudgetBytes: 1024 * 1024,
    contextLength: 1e9,
    onProgress: (m) => progress.push(m),
  });
  try {
    const window = engine.models()[0]?.contextLength ?? 0;
    assert.ok(window >= 64 && window < 1e9 && window % 64 === 0, `context length ${window}`);
    const lines = progress.filter((l) => l.startsWith('context length bounded'));
    assert.equal(lines.length, 1, progress.join('\n'));
    assert.match(
      lines[0] ?? '',
      new RegExp(`^context length bounded to ${window} tokens: model\\.contextLength 1000000000 is more than the KV budget \\(1048576 bytes`),
    );
  } finally {
    await engine.close();
  }
});
