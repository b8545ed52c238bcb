/**
 * dependency-cruiser: imports point down the layers drawn in README.md and CONTRIBUTING.md.
 * server on top; cap beside it; engine below (it composes policies and runtime); policies
 * and runtime side by side, neither importing the other; kv and model at the bottom.
 * Exactly one directory imports onnxruntime-node. `npm run lint` (part of `npm test`) runs
 * `depcruise src`; a wrong import fails CI naming the rule, the file and the import.
 *
 * MAY_IMPORT is the whole picture: for each top-level directory of src/ ("(root)" is the
 * files directly in src/), the directories it may import from besides itself. A directory
 * missing from the table may import nothing outside itself, so a new one must be placed.
 */
const MAY_IMPORT = {
  model: [],
  // Browser code (its own tsconfig, DOM types, compiled apart into dist/playground): talks
  // to the server over HTTP only, imports nothing from the rest of src/.
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

const ROOT_FILE = '^src/[^/]+$';
const dirOf = (layer) => (layer === '(root)' ? ROOT_FILE : `^src/${layer}/`);
const LAYERS = Object.keys(MAY_IMPORT);

const layerRules = LAYERS.map((layer) => {
  const allowed = new Set([layer, ...MAY_IMPORT[layer]]);
  const pathNot = [...allowed].map(dirOf);
  return {
    name: `layer-${layer === '(root)' ? 'root' : layer}`,
    comment: `src/${layer === '(root)' ? '*.ts' : `${layer}/`} may import only from ${[...allowed].join(', ')} (MAY_IMPORT in .dependency-cruiser.cjs)`,
    severity: 'error',
    from: { path: dirOf(layer) },
    // Anything under src/ outside the allowed layers (root files included unless allowed).
    to: { path: '^src/', pathNot },
  };
});

module.exports = {
  forbidden: [
    ...layerRules,
    {
      name: 'layer-unplaced',
      comment: 'every top-level directory of src/ has a row in MAY_IMPORT (.dependency-cruiser.cjs)',
      severity: 'error',
      from: { path: '^src/', pathNot: [ROOT_FILE, ...LAYERS.filter((l) => l !== '(root)').map(dirOf)] },
      to: {},
    },
    {
      name: 'onnxruntime-only-in-runtime',
      comment: 'src/runtime/ is the only importer of onnxruntime-node (the threading rule: sessions run on the worker)',
      severity: 'error',
      from: { path: '^src/', pathNot: '^src/runtime/' },
      to: { path: 'onnxruntime-node' },
    },
    {
      name: 'src-not-test',
      comment: 'served code never imports test code',
      severity: 'error',
      from: { path: '^src/' },
      to: { path: '^test/' },
    },
    {
      name: 'not-to-unresolvable',
      comment: 'an import that resolves to nothing is a typo or a missing dependency',
      severity: 'error',
      from: {},
      to: { couldNotResolve: true },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    // Type-only imports count: a layer that names another layer's types depends on it.
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { exportsFields: ['exports'], conditionNames: ['import', 'require', 'node', 'default', 'types'] },
    reporterOptions: { text: { highlightFocused: true } },
  },
};
