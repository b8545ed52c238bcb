/**
 * Imports point down the layers drawn in DESIGN.md and the README: server on
 * top; cap beside it; engine below (it composes policies and runtime); policies
 * and runtime side by side, neither importing the other; kv and model at the
 * bottom. Exactly one directory imports onnxruntime-node. Checked on the
 * TypeScript sources, so a wrong import fails `npm test` in CI.
 */
import test from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, normalize, relative, sep } from 'node:path';

/** For each top-level directory of src/, the directories it may import from (besides itself). */
const MAY_IMPORT: Readonly<Record<string, readonly string[]>> = {
  model: [],
  // Browser code (its own tsconfig, DOM types): talks to the server over HTTP only.
  playground: [],
  kv: ['model'],
  runtime: ['model', 'kv'],
  policies: ['model', 'kv'],
  engine: ['model', 'kv', 'runtime', 'policies'],
  // Metrics name what the engine and the policies report (types only).
  metrics: ['engine', 'policies'],
  config: ['policies', 'model'],
  cap: ['config', 'engine', 'metrics', 'policies', 'model'],
  server: ['cap', 'config', 'engine', 'metrics', 'policies', 'model', 'kv', '(root)'],
  commands: ['cap', 'config', 'engine', 'metrics', 'policies', 'model', 'kv', 'server', '(root)'],
  '(root)': ['cap', 'config', 'engine', 'metrics', 'policies', 'model', 'kv', 'server', 'commands', 'runtime'],
};

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? sources(p) : p.endsWith('.ts') ? [p] : [];
  });
}

function layerOf(file: string): string {
  const parts = relative('src', file).split(sep);
  return parts.length > 1 ? (parts[0] ?? '(root)') : '(root)';
}

const FROM = /^(?:import|export)\b[^'"]*?from\s+'([^']+)'|^import\s+'([^']+)'/gm;

test('imports point down the layers; only runtime/ imports onnxruntime-node', () => {
  const problems: string[] = [];
  for (const file of sources('src')) {
    const layer = layerOf(file);
    const allowed = MAY_IMPORT[layer];
    if (allowed === undefined) {
      problems.push(`${file}: src/${layer} has no entry in the layer table`);
      continue;
    }
    for (const m of readFileSync(file, 'utf8').matchAll(FROM)) {
      const spec = m[1] ?? m[2] ?? '';
      if (spec === 'onnxruntime-node' && layer !== 'runtime') problems.push(`${file}: imports onnxruntime-node outside runtime/`);
      if (!spec.startsWith('.')) continue;
      const target = layerOf(normalize(join(file, '..', spec)));
      if (target !== layer && !allowed.includes(target)) problems.push(`${file}: ${layer} imports ${target} (${spec})`);
    }
  }
  assert.deepEqual(problems, []);
});
