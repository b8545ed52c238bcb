/** Request log lines carry the path, never the query string: a key sent as ?api_key= must not reach the log. */
import t from 'tap';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { loadConfig } from '../../../src/config/load-config.js';
import { buildApp } from '../../../src/server/app.js';
import { ScriptedEngine } from './scripted-engine.js';
import { testPolicies } from './helpers.js';

t.test('the request log names the path and drops the query string (a key in ?api_key= stays out)', async (t) => {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(
        ...chunk
          .toString('utf8')
          .split('\n')
          .filter((l) => l !== ''),
      );
      done();
    },
  });
  const app = buildApp({ engine: new ScriptedEngine(), config: loadConfig({}), policies: testPolicies(), logger: { level: 'info', stream } });
  t.after(() => app.close());
  for (const url of ['/health?api_key=sk-secret-123', '/nope?api_key=sk-secret-123&x=1']) await app.inject({ method: 'GET', url });
  assert.ok(lines.length >= 2, `log lines: ${lines.length}`);
  assert.ok(!lines.some((l) => l.includes('sk-secret-123')), lines.join('\n'));
  const urls = lines.flatMap((l) => {
    const req = (JSON.parse(l) as { req?: { url?: string } }).req;
    return req?.url !== undefined ? [req.url] : [];
  });
  assert.deepEqual(urls, ['/health', '/nope']);
});
