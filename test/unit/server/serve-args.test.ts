import t from 'tap';
import assert from 'node:assert/strict';
import { loadConfig } from '../../../src/config/load-config.js';
import { parseServeArgs } from '../../../src/server/serve-args.js';

t.test('serve flags map to config paths; --set applies after them', async () => {
  const args = parseServeArgs([
    '--config',
    'config/default.yaml',
    '--model',
    '/m/x',
    '--host=0.0.0.0',
    '--port',
    '9000',
    '--policy',
    'full',
    '--served-model-name',
    '123',
    '--set',
    'server.maxConcurrent=16',
    '--set=server.port=9001',
  ]);
  assert.equal(args.configFile, 'config/default.yaml');
  const config = loadConfig({ file: args.configFile as string, overrides: args.overrides });
  assert.equal(config.model.dir, '/m/x');
  assert.equal(config.server.host, '0.0.0.0');
  assert.equal(config.server.port, 9001, '--set wins over --port');
  assert.equal(config.routing.defaultPolicy, 'full');
  assert.equal(config.model.servedModelName, '123', 'names stay strings, not YAML numbers');
  assert.equal(config.server.maxConcurrent, 16);
});

t.test('serve flags: errors name the problem', async () => {
  assert.throws(() => parseServeArgs(['--port', 'eighty']), /--port expects an integer, got 'eighty'/);
  assert.throws(() => parseServeArgs(['--model']), /--model needs a value/);
  assert.throws(() => parseServeArgs(['--model', '--port', '1']), /--model needs a value/);
  assert.throws(() => parseServeArgs(['--modle', 'x']), /unknown argument '--modle'/);
  assert.throws(() => parseServeArgs(['--set', 'oops']), /PATH=VALUE/);
  // The name is checked against the loaded policies when the server starts (cap/router).
  assert.equal(loadConfig({ overrides: parseServeArgs(['--policy', 'snapkv-25']).overrides }).routing.defaultPolicy, 'snapkv-25');
  assert.throws(() => loadConfig({ overrides: parseServeArgs(['--policy', '']).overrides }), /routing\.defaultPolicy: must NOT have fewer than 1 characters/);
  assert.deepEqual(parseServeArgs([]), { configFile: undefined, overrides: [] });
});
