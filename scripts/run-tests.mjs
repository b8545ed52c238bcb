// Runs the compiled unit and integration tests with node's test runner (TAP output).
// Tests live in test/ as TypeScript and are compiled to dist/test by `npm run build`.
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

function collect(dir) {
  let out = [];
  let entries;
  try { entries = readdirSync(dir); } catch { return out; }
  for (const name of entries.sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out = out.concat(collect(p));
    else if (name.endsWith('.test.js')) out.push(p);
  }
  return out;
}

const filter = process.argv.slice(2);
let files = [...collect('dist/test/unit'), ...collect('dist/test/integration')];
if (filter.length > 0) files = files.filter((f) => filter.some((s) => f.includes(s)));
const res = spawnSync(process.execPath, ['--test', '--test-reporter=tap', '--test-concurrency=1', ...files], {
  stdio: 'inherit',
  env: { ...process.env, CAPSERVE_TEST: '1' },
});
process.exit(res.status ?? 1);
