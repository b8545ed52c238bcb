/**
 * A model that cannot load stops `capserve serve` and `capserve generate` with one
 * line on stderr, `capserve: <file>: <problem>`, and a non-zero exit, whether the
 * main thread found the problem (a broken config.json) or the inference worker
 * did (a truncated model.safetensors): no JSON log line, no stack.
 */
import t from 'tap';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { storiesModelDir } from './server-harness.js';

const modelDir = storiesModelDir();
const skip = modelDir === null ? 'stories260K not found (set CAPSERVE_SHARED to the shared folder)' : false;
const cli = path.resolve(process.cwd(), 'dist/src/cli.js');

interface Run {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

function run(args: readonly string[]): Promise<Run> {
  const child = spawn(process.execPath, [cli, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, CAPSERVE_LOG_LEVEL: 'info' } });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
  child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  return new Promise((resolve) =>
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    }),
  );
}

/** A copy of stories260K with one file broken. */
function brokenCopy(t: { after: (fn: () => void) => void }, breakIt: (dir: string) => void): string {
  const root = mkdtempSync(path.join(tmpdir(), 'capserve-load-error-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const dir = path.join(root, 'model');
  cpSync(modelDir as string, dir, { recursive: true });
  breakIt(dir);
  return dir;
}

const serveArgs = (dir: string): string[] => [
  'serve',
  '--model',
  dir,
  '--port',
  '0',
  '--set',
  'engine.threads=1',
  '--set',
  'model.chatTemplateFallback=chatml',
];

function assertOneLine(r: Run, file: string, problem: RegExp): void {
  assert.notEqual(r.code, 0, r.stderr);
  const lines = r.stderr.split('\n').filter((l) => l.startsWith('capserve'));
  assert.equal(lines.length, 1, r.stderr);
  const line = lines[0] ?? '';
  assert.ok(line.startsWith(`capserve: ${file}: `), line);
  assert.match(line, problem);
  assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack on stderr');
  assert.doesNotMatch(r.stdout, /"stack"|"level":50/, 'no error log line with a stack on stdout');
}

t.test('serve: a truncated model.safetensors, found by the inference worker, is one line and exit 1', { skip }, async (t) => {
  const dir = brokenCopy(t, (d) => {
    const file = path.join(d, 'model.safetensors');
    truncateSync(file, Math.floor(statSync(file).size / 2));
  });
  const r = await run(serveArgs(dir));
  assertOneLine(r, path.join(dir, 'model.safetensors'), /truncated/);
  assert.equal(r.code, 1);
  // It did listen first (503 while loading) and then stopped cleanly.
  assert.match(r.stdout, /"reason":"model load failure"/);
});

t.test('generate: a truncated model.safetensors is one line and a non-zero exit', { skip }, async (t) => {
  const dir = brokenCopy(t, (d) => {
    const file = path.join(d, 'model.safetensors');
    truncateSync(file, Math.floor(statSync(file).size / 2));
  });
  const r = await run(['generate', '--model', dir, '--prompt', 'Once']);
  assertOneLine(r, path.join(dir, 'model.safetensors'), /truncated/);
});

t.test('serve: a config.json that is not JSON is one line and a non-zero exit', { skip }, async (t) => {
  const dir = brokenCopy(t, (d) => writeFileSync(path.join(d, 'config.json'), '{"hidden_size": 64,'));
  const r = await run(serveArgs(dir));
  assertOneLine(r, path.join(dir, 'config.json'), /cannot read the model's config/);
});
