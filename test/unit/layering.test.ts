/**
 * The layer rules in .dependency-cruiser.cjs (imports point down the layers drawn in the
 * README and CONTRIBUTING.md; only runtime/ imports onnxruntime-node) are enforced on src/
 * by `npm run lint`, part of `npm test`. This test shows they can fail: dependency-cruiser,
 * run with the project's config on a small tree laid out like src/, reports a policy that
 * imports the runtime, a model file that imports the engine, and a directory missing
 * from the table, and nothing else in that tree (engine -> runtime, policies; runtime ->
 * model are allowed). One run: the CLI takes seconds to start.
 */
import t from 'tap';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

// The package exports only its API (src/main/index.mjs); the CLI is bin/ beside src/.
const depcruise = fileURLToPath(new URL('../../bin/dependency-cruise.mjs', import.meta.resolve('dependency-cruiser')));
const config = path.resolve('.dependency-cruiser.cjs');

interface Violation {
  readonly from: string;
  readonly to: string;
  readonly rule: { readonly name: string };
}

function cruise(files: Record<string, string>): Violation[] {
  const dir = mkdtempSync(path.join(tmpdir(), 'capserve-layers-'));
  try {
    writeFileSync(path.join(dir, 'tsconfig.json'), JSON.stringify({ compilerOptions: { module: 'NodeNext', moduleResolution: 'NodeNext', strict: true } }));
    for (const [name, text] of Object.entries(files)) {
      mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
      writeFileSync(path.join(dir, name), text);
    }
    const res = spawnSync(process.execPath, [depcruise, 'src', '--config', config, '--output-type', 'json'], { cwd: dir, encoding: 'utf8' });
    assert.ok(res.stdout.startsWith('{'), `dependency-cruiser ran: ${res.stderr}`);
    const out = JSON.parse(res.stdout) as { summary: { violations: Violation[] } };
    return out.summary.violations;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const GOOD: Record<string, string> = {
  'src/model/spec.ts': 'export const spec = 1;\n',
  'src/runtime/session.ts': "import { spec } from '../model/spec.js';\nexport const session = spec;\n",
  'src/policies/method.ts': "import { spec } from '../model/spec.js';\nexport const method = spec;\n",
  'src/engine/core.ts':
    "import { session } from '../runtime/session.js';\nimport { method } from '../policies/method.js';\nexport const core = session + method;\n",
};

t.test('upward and sideways imports, and an unplaced directory, are reported by rule name; downward ones are not', async () => {
  const bad = {
    ...GOOD,
    'src/policies/method.ts': "import { session } from '../runtime/session.js';\nexport const method = session;\n",
    'src/model/spec.ts': "import type { core } from '../engine/core.js';\nexport const spec = 1;\nexport type Core = typeof core;\n",
    'src/elsewhere/thing.ts': "import { spec } from '../model/spec.js';\nexport const thing = spec;\n",
  };
  const found = cruise(bad)
    .map((v) => `${v.rule.name}: ${v.from} -> ${v.to}`)
    .sort();
  assert.deepEqual(found, [
    'layer-model: src/model/spec.ts -> src/engine/core.ts',
    'layer-policies: src/policies/method.ts -> src/runtime/session.ts',
    'layer-unplaced: src/elsewhere/thing.ts -> src/model/spec.ts',
  ]);
});
