// Runs the compiled unit and integration tests (dist/test, built by `npm run build`).
// The tests are node-tap tests; .taprc holds the settings both modes share (which files
// run alone, the per-file timeout, the coverage report).
//
//   node scripts/run-tests.mjs                  every test (what `npm test` runs)
//   node scripts/run-tests.mjs <substring>...   only files whose path contains one of them
//   node scripts/run-tests.mjs --coverage       every test through tap's runner, with V8
//                                               coverage of src/ and its summary
//                                               (`npm run test:coverage`, its own CI step)
//
// Without --coverage each test file runs as a plain `node --enable-source-maps FILE` (a tap
// test file is a node program that prints TAP and exits non-zero on a failure), jobs =
// available CPUs, the `serial` files of .taprc each alone. tap's runner loads its
// process-tracking import hooks into every test process, which cost ~3 s per file here
// (a trivial unit file: 0.6 s alone, 3.3 s through the runner): 137 files, most of the
// suite's wall time. Coverage needs those hooks, so --coverage uses tap's runner.
//
// A test file still written for node:test (a branch from before the move to tap) runs
// too (it is a node program printing TAP as well). Convert it with
// `node tools/codemod/node-test-to-tap.mjs <file>`.
import { spawn, spawnSync } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';

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

/** The `serial:` list and `timeout:` (seconds) of .taprc, read line by line (a flat YAML subset). */
function taprc() {
  const serial = [];
  let timeout = 1800;
  let inSerial = false;
  for (const line of readFileSync('.taprc', 'utf8').split('\n')) {
    if (/^serial:\s*$/.test(line)) {
      inSerial = true;
      continue;
    }
    const item = /^\s+-\s+(\S+)\s*$/.exec(line);
    if (inSerial && item) {
      serial.push(resolve(item[1]));
      continue;
    }
    if (!/^\s*(#|$)/.test(line)) inSerial = false;
    const t = /^timeout:\s*(\d+)/.exec(line);
    if (t) timeout = Number(t[1]);
  }
  return { serial, timeout };
}

const args = process.argv.slice(2);
const coverage = args.includes('--coverage');
const filter = args.filter((a) => a !== '--coverage');
if (coverage && filter.length > 0) {
  console.error('run-tests: --coverage is for the whole suite only (a partial run’s coverage says nothing about the suite)');
  process.exit(2);
}
let files = [...collect('dist/test/unit'), ...collect('dist/test/integration')];
if (filter.length > 0) files = files.filter((f) => filter.some((s) => f.includes(s)));
if (files.length === 0) {
  console.error(`run-tests: no compiled test file matches ${JSON.stringify(filter)} (run \`npm run build\` first?)`);
  process.exit(1);
}
const env = { ...process.env, CAPSERVE_TEST: '1' };

if (coverage) {
  const tap = join(createRequire(import.meta.url).resolve('tap/package.json'), '..', 'dist', 'esm', 'run.mjs');
  const res = spawnSync(process.execPath, [tap, ...files], { stdio: 'inherit', env });
  process.exit(res.status ?? 1);
}

const { serial, timeout } = taprc();
const isSerial = (f) => serial.some((s) => resolve(f) === s || resolve(f).startsWith(`${s}/`));
const jobs = Math.max(1, availableParallelism());
const started = Date.now();
let index = 0;
const results = { files: 0, failedFiles: [], pass: 0, fail: 0, skip: 0, todo: 0 };

/** Runs one file; resolves when it has exited, with its output and outcome recorded. */
function runFile(file) {
  return new Promise((done) => {
    const t0 = Date.now();
    // tap's root test times a plain-node file out after TAP_TIMEOUT seconds (30 when unset;
    // tap's runner sets it from .taprc): pass .taprc's, so a file over 30 s under load does
    // not fail with "timeout!" (it did: long-context, 32 s on a CI machine).
    const childEnv = { ...env, TAP_TIMEOUT: String(timeout) };
    const child = spawn(process.execPath, ['--enable-source-maps', file], { env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeout * 1000);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      // Top-level subtests of the file (indent 0): counted like tap's summary.
      let pass = 0;
      let fail = 0;
      let skip = 0;
      let todo = 0;
      for (const line of out.split('\n')) {
        const m = /^(not )?ok \d+\b(.*)$/.exec(line);
        if (!m) continue;
        if (/#\s*SKIP/i.test(m[2])) skip++;
        else if (/#\s*TODO/i.test(m[2])) todo++;
        else if (m[1]) fail++;
        else pass++;
      }
      const ok = code === 0 && fail === 0 && !timedOut;
      results.files++;
      results.pass += pass;
      results.fail += fail;
      results.skip += skip;
      results.todo += todo;
      const n = ++index;
      const ms = Date.now() - t0;
      if (ok) {
        process.stdout.write(`ok ${n} - ${file} # time=${ms}ms${skip > 0 ? ` (${skip} skipped)` : ''}\n`);
        // Skips say why (missing ../shared data, no chromium): keep the reasons visible.
        for (const line of out.split('\n')) if (/^(not )?ok \d+\b.*#\s*SKIP/i.test(line)) process.stdout.write(`    ${line}\n`);
      } else {
        results.failedFiles.push(file);
        const why = timedOut ? `timed out after ${timeout} s` : signal ? `killed by ${signal}` : `exit code ${code}, ${fail} failed`;
        process.stdout.write(`not ok ${n} - ${file} # time=${ms}ms (${why})\n`);
        process.stdout.write(out.replace(/^/gm, '    ') + '\n');
      }
      done();
    });
  });
}

async function main() {
  // The serial files first, each alone; then the rest, `jobs` at a time.
  for (const f of files.filter(isSerial)) await runFile(f);
  const queue = files.filter((f) => !isSerial(f));
  const worker = async () => {
    for (let f = queue.shift(); f !== undefined; f = queue.shift()) await runFile(f);
  };
  await Promise.all(Array.from({ length: Math.min(jobs, queue.length) }, worker));
  const secs = ((Date.now() - started) / 1000).toFixed(1);
  process.stdout.write(`1..${results.files}\n`);
  process.stdout.write(`# files: ${results.files}, failed: ${results.failedFiles.length}\n`);
  process.stdout.write(
    `# { total: ${results.pass + results.fail + results.skip + results.todo}, pass: ${results.pass}, fail: ${results.fail}, skip: ${results.skip}, todo: ${results.todo} }\n`,
  );
  process.stdout.write(`# time=${secs}s (${jobs} jobs)\n`);
  for (const f of results.failedFiles) process.stdout.write(`# failed: ${f}\n`);
  process.exit(results.failedFiles.length > 0 ? 1 : 0);
}

await main();
