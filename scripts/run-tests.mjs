// Runs the compiled unit and integration tests (dist/test, built by `npm run build`)
// with node-tap; .taprc holds the settings (integration files serial, coverage report).
//
//   node scripts/run-tests.mjs                  every test (what `npm test` runs)
//   node scripts/run-tests.mjs --coverage       every test, with V8 coverage of src/ and its
//                                               summary (`npm run test:coverage`; CI runs it as
//                                               its own step: coverage makes the suite ~45%
//                                               slower, past the 10-minute budget of `npm test`)
//   node scripts/run-tests.mjs <substring>...   only files whose path contains one of them
//                                               (never with coverage: a partial run's coverage
//                                               says nothing about the suite)
//
// A test file still written for node:test (a branch from before the move to tap) runs
// too: tap runs every file as its own process and reads node:test's TAP output. Convert
// it with `node tools/codemod/node-test-to-tap.mjs <file>`.
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';

function collect(dir) {
  let out = [];
  let entries;
  try {
    entries = readdirSync(dir);
  } catch {
    return out;
  }
  for (const name of entries.sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out = out.concat(collect(p));
    else if (name.endsWith('.test.js')) out.push(p);
  }
  return out;
}

const args = process.argv.slice(2);
const coverage = args.includes('--coverage');
const filter = args.filter((a) => a !== '--coverage');
if (coverage && filter.length > 0) {
  console.error('run-tests: --coverage is for the whole suite only');
  process.exit(2);
}
let files = [...collect('dist/test/unit'), ...collect('dist/test/integration')];
if (filter.length > 0) files = files.filter((f) => filter.some((s) => f.includes(s)));
if (files.length === 0) {
  console.error(`run-tests: no compiled test file matches ${JSON.stringify(filter)} (run \`npm run build\` first?)`);
  process.exit(1);
}
const tap = join(createRequire(import.meta.url).resolve('tap/package.json'), '..', 'dist', 'esm', 'run.mjs');
const res = spawnSync(process.execPath, [tap, ...(coverage ? [] : ['--disable-coverage']), ...files], {
  stdio: 'inherit',
  env: { ...process.env, CAPSERVE_TEST: '1' },
});
process.exit(res.status ?? 1);
