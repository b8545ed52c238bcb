/**
 * The compile cache checks what it reuses: each file's length and checksum are in
 * the manifest; a zeroed, truncated or missing file, or an unparsable manifest, is
 * reported in one line naming the entry, discarded and recompiled. Publishing is a
 * rename that never replaces a sound entry another process put there first.
 */
import assert from 'node:assert/strict';
import { mkdirSync, openSync, readdirSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync, writeSync, closeSync, existsSync } from 'node:fs';
import { basename, join } from 'node:path';
import { spawn } from 'node:child_process';
import t from 'tap';
import { compileModel, type CompiledModel } from '../../../src/model/compile/compile-model.js';
import { digestFile, publishEntry } from '../../../src/model/compile/cache-entry.js';
import { loadCheckpoint, type Checkpoint } from '../../../src/model/checkpoint.js';
import { missingShared, STORIES_DIR } from '../../helpers/shared.js';
import { tempDir } from './fixtures.js';

const skip = missingShared('models', 'stories260K');

function compile(checkpoint: Checkpoint, cacheDir: string): { compiled: CompiledModel; log: string[] } {
  const log: string[] = [];
  const compiled = compileModel(checkpoint, { cacheDir, weightDtype: 'fp32', onProgress: (m) => log.push(m) });
  return { compiled, log };
}

interface ManifestFiles {
  readonly files: Record<string, { bytes: number; crc32: number }>;
}

function manifestFiles(dir: string): ManifestFiles['files'] {
  return (JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as ManifestFiles).files;
}

/** The entry is whole again: every file matches the manifest written with it. */
function assertSound(dir: string): void {
  for (const [name, want] of Object.entries(manifestFiles(dir))) assert.deepEqual(digestFile(join(dir, name)), want, name);
}

const DAMAGE: ReadonlyArray<readonly [string, (dir: string) => void, RegExp]> = [
  [
    'the middle of weights.bin zeroed',
    (dir) => {
      const path = join(dir, 'weights.bin');
      const size = statSync(path).size;
      const fd = openSync(path, 'r+');
      writeSync(fd, Buffer.alloc(Math.min(4096, size >> 2)), 0, Math.min(4096, size >> 2), size >> 1);
      closeSync(fd);
    },
    /weights\.bin does not match its checksum/,
  ],
  ['weights.bin truncated', (dir) => truncateSync(join(dir, 'weights.bin'), 100), /weights\.bin has 100 bytes/],
  ['decoder.onnx missing', (dir) => rmSync(join(dir, 'decoder.onnx')), /decoder\.onnx is missing/],
  ['an unparsable manifest', (dir) => writeFileSync(join(dir, 'manifest.json'), '{"compilerVersion": 9, "ke'), /manifest\.json is not valid JSON/],
  ['a missing manifest', (dir) => rmSync(join(dir, 'manifest.json')), /manifest\.json is missing/],
];

t.test('the manifest records every file with its length and checksum, and a sound entry is reused', { skip: skip ?? false }, async () => {
  const checkpoint = loadCheckpoint(STORIES_DIR);
  const cache = tempDir('compile-cache');
  const first = compile(checkpoint, cache);
  const files = manifestFiles(first.compiled.dir);
  assert.deepEqual(Object.keys(files).sort(), ['decoder.onnx', 'weights.bin']);
  assertSound(first.compiled.dir);
  const second = compile(checkpoint, cache);
  assert.deepEqual(second.log, [`using compiled graphs from ${first.compiled.dir}`]);
});

for (const [what, damage, problem] of DAMAGE) {
  t.test(`a cache entry with ${what} is reported in one line, discarded and recompiled`, { skip: skip ?? false }, async () => {
    const checkpoint = loadCheckpoint(STORIES_DIR);
    const cache = tempDir('compile-cache');
    const { compiled } = compile(checkpoint, cache);
    damage(compiled.dir);
    const again = compile(checkpoint, cache);
    const reports = again.log.filter((l) => l.includes('unusable'));
    assert.equal(reports.length, 1, again.log.join('\n'));
    assert.ok(reports[0]?.includes(compiled.dir), 'the line names the entry');
    assert.match(reports[0] ?? '', problem);
    assert.ok(
      again.log.some((l) => l.startsWith('compiling ')),
      'recompiled',
    );
    assertSound(again.compiled.dir);
    assert.deepEqual(compile(checkpoint, cache).log, [`using compiled graphs from ${compiled.dir}`]);
  });
}

t.test('two processes compiling the same model into one cache both succeed and leave one sound entry', { skip: skip ?? false }, async () => {
  const cache = tempDir('compile-race');
  const compiler = new URL('../../../src/model/compile/compile-model.js', import.meta.url).href;
  const checkpoint = new URL('../../../src/model/checkpoint.js', import.meta.url).href;
  const script = [
    `import { compileModel } from ${JSON.stringify(compiler)};`,
    `import { loadCheckpoint } from ${JSON.stringify(checkpoint)};`,
    `const c = compileModel(loadCheckpoint(${JSON.stringify(STORIES_DIR)}), { cacheDir: ${JSON.stringify(cache)}, weightDtype: 'fp32' });`,
    'process.stdout.write(c.dir);',
  ].join('\n');
  const run = (): Promise<{ code: number | null; out: string; err: string }> =>
    new Promise((resolve) => {
      const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr.on('data', (d: Buffer) => (err += d.toString()));
      child.on('close', (code) => resolve({ code, out, err }));
    });
  const [a, b] = await Promise.all([run(), run()]);
  assert.equal(a.code, 0, a.err);
  assert.equal(b.code, 0, b.err);
  assert.equal(a.out, b.out);
  assertSound(a.out);
  assert.deepEqual(readdirSync(cache), [basename(a.out)], 'no temporary or stale directories left');
});

t.test('publishing keeps a sound entry another process renamed into place first, and replaces a broken one', async () => {
  const root = tempDir('publish');
  const dir = join(root, 'entry');
  const build = (name: string, content: string): string => {
    const d = join(root, name);
    mkdirSync(d);
    writeFileSync(join(d, 'file'), content);
    return d;
  };
  assert.equal(
    publishEntry(build('a', 'first'), dir, () => true),
    'published',
  );
  const loser = build('b', 'second');
  assert.equal(
    publishEntry(loser, dir, () => true),
    'existing',
  );
  assert.equal(readFileSync(join(dir, 'file'), 'utf8'), 'first');
  assert.equal(existsSync(loser), false, 'the loser drops its own work');
  assert.equal(
    publishEntry(build('c', 'third'), dir, () => false),
    'published',
  );
  assert.equal(readFileSync(join(dir, 'file'), 'utf8'), 'third');
  // The entry was broken when checked but sound once moved aside (another process just published it): it is put back and used.
  const late = build('d', 'fourth');
  assert.equal(
    publishEntry(late, dir, (at) => at !== dir),
    'existing',
  );
  assert.equal(readFileSync(join(dir, 'file'), 'utf8'), 'third');
  assert.equal(existsSync(late), false);
  assert.deepEqual(readdirSync(root).sort(), ['entry'], 'nothing left aside');
});
