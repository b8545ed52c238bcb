/**
 * One cold start, in its own process, timed from process start (performance.now()
 * counts from the process's time origin) to the first token's logits:
 *   --mode load-all   the dense DecoderSession: check and load every weight, then prefill
 *   --mode layerwise  STI shards at fp32, nothing resident, no preload buffer, no prefetch:
 *                     each layer's shards read when the layer starts (layer-by-layer load)
 *   --mode sti        STI at --bits with the preload buffer (--preload bytes) and the
 *                     IO/compute pipeline (layer l+1 read while layer l computes)
 * The compiled entries must exist already (sti-bench.ts builds them untimed).
 * Prints one JSON line: ttftMs (from process start), readyMs (model ready), firstTokenMs.
 */
import { parseArgs } from 'node:util';
import { allLogitsInputs } from '../../src/engine/sti-profile.js';
import { loadCheckpoint } from '../../src/model/checkpoint.js';
import { compileModel } from '../../src/model/compile/compile-model.js';
import { compileSti } from '../../src/model/compile/sti-compile.js';
import type { ExpertBits } from '../../src/model/compile/moe-quantize.js';
import { DecoderSession } from '../../src/runtime/decoder-session.js';
import type { ModelRunner } from '../../src/runtime/model-runner.js';
import { StiRunner } from '../../src/runtime/sti-runner.js';
import { planShards } from '../../src/policies/weight-elastic/planner.js';

const { values } = parseArgs({
  options: {
    model: { type: 'string' },
    'cache-dir': { type: 'string' },
    mode: { type: 'string' },
    bits: { type: 'string', default: '32' },
    preload: { type: 'string', default: '0' },
    threads: { type: 'string', default: '2' },
    prompt: { type: 'string', default: '16' },
  },
});
const modelDir = values.model ?? '';
const cacheDir = values['cache-dir'] ?? '';
const threads = Number(values.threads);
const cp = loadCheckpoint(modelDir);
const spec = cp.spec;
const ids = Array.from({ length: Number(values.prompt) }, (_, i) => 3 + ((i * 97) % (spec.vocabSize - 3)));
const inputs = { ...allLogitsInputs(spec, ids), logitCount: 1, logitIndex: BigInt64Array.of(BigInt(ids.length - 1)) };
let runner: ModelRunner;
let read = 0;
if (values.mode === 'load-all') {
  runner = await DecoderSession.create(compileModel(cp, { cacheDir, weightDtype: 'fp32' }).decoderPath, spec, { threads });
} else {
  const sti = compileSti(cp, { cacheDir });
  const r = await StiRunner.open(sti.dir, spec, { threads });
  const bits = Number(values.bits) as ExpertBits;
  const layerwise = values.mode === 'layerwise';
  const plan = planShards({
    numLayers: spec.numLayers,
    shards: sti.manifest.shards.map((s) => ({ id: s.id, layer: s.layer, bytes: (b: ExpertBits) => r.fileBytes(s.id, b), cost: null })),
    choices: [bits],
    fixedBits: layerwise ? 32 : bits,
    budgetBytes: 0,
    preloadBytes: layerwise ? 0 : Number(values.preload),
    targetMsPerToken: 0,
    hardware: { computeMsPerLayer: 1, readBytesPerMs: 1e6 },
  });
  await r.configure(plan, { prefetch: !layerwise });
  read = plan.preloadBytes;
  runner = r;
}
const readyMs = performance.now();
const out = await runner.run(inputs);
const ttftMs = performance.now();
if (out.logits.length !== spec.vocabSize) throw new Error('unexpected logits');
const s = runner.stats();
process.stdout.write(
  `${JSON.stringify({ mode: values.mode, bits: Number(values.bits), ttftMs, readyMs, firstTokenMs: ttftMs - readyMs, ioStallMs: s['stiIoStallMs'] ?? null, bytesRead: s['stiBytesLoaded'] ?? 0, preloadBytes: read })}\n`,
);
await runner.release();
