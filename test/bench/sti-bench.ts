/**
 * The STI section of the CAP report.
 *
 * 1. Accuracy at equal weight memory (the paper's central claim): on trained
 *    models (stories260K, the long-context fixture), importance-tuned mixed widths
 *    (the planner's knapsack on the profile) against uniform quantization, at
 *    total shard bytes of 1/16 .. 1/2 of fp32 and at exactly each uniform width's
 *    bytes: KL against fp32 and perplexity on held-out text (the profile is
 *    measured on other text).
 * 2. Cold start on a generated model (`135m`, `small` with --quick): time to first
 *    token from process start for load-all, layer-by-layer without a buffer, and
 *    STI with its preload buffer (fp32 and 4-bit shards), each in a fresh process,
 *    the page cache dropped before each run when /proc/sys/vm/drop_caches is writable.
 * Prints one JSON line.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { evaluateWidths, profileShards } from '../../src/engine/sti-profile.js';
import { loadCheckpoint } from '../../src/model/checkpoint.js';
import { compileModel } from '../../src/model/compile/compile-model.js';
import { compileSti } from '../../src/model/compile/sti-compile.js';
import type { ExpertBits } from '../../src/model/compile/moe-quantize.js';
import { widthsForBytes } from '../../src/policies/weight-elastic/planner.js';
import { StiRunner } from '../../src/runtime/sti-runner.js';
import { sharedPath } from '../helpers/shared.js';
import { median } from './stats.js';

const here = dirname(fileURLToPath(import.meta.url));
const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    'cold-model': { type: 'string' },
    out: { type: 'string', default: '/tmp/capserve-sti-bench' },
    threads: { type: 'string', default: '2' },
    repeats: { type: 'string', default: '3' },
  },
});
const quick = values.quick;
const cacheDir = resolve(values.out);

export interface AccuracyRow {
  readonly model: string;
  readonly label: string;
  readonly budgetBytes: number;
  readonly fp32Bytes: number;
  readonly uniform: { readonly bits: number; readonly bytes: number; readonly kl: number; readonly ppl: number } | null;
  readonly mixed: { readonly bytes: number; readonly kl: number; readonly ppl: number; readonly histogram: Record<string, number> };
  readonly pplFp32: number;
}

export interface ColdRow {
  readonly config: string;
  readonly ttftMs: number;
  readonly readyMs: number;
  readonly firstTokenMs: number;
  readonly bytesRead: number;
  readonly runs: number;
}

export interface StiBenchResult {
  readonly accuracy: readonly AccuracyRow[];
  readonly accuracySkipped: readonly string[];
  readonly profileTokens: number;
  readonly evalTokens: number;
  readonly cold: readonly ColdRow[];
  readonly coldModel: string | null;
  readonly cacheDropped: boolean;
}

function tokensOf(file: string, encode: (t: string) => number[], count: number, skip: number): number[] {
  const text = readFileSync(file, 'utf8').slice(skip, skip + count * 16);
  return encode(text).slice(0, count);
}

async function accuracy(name: string, dir: string, profileTokens: number, evalTokens: number): Promise<AccuracyRow[]> {
  const cp = loadCheckpoint(dir);
  const spec = cp.spec;
  const sti = compileSti(cp, { cacheDir });
  const runner = await StiRunner.open(sti.dir, spec, { threads: Number(values.threads) });
  const encode = (t: string): number[] => cp.tokenizer.encode(t, { addSpecialTokens: true });
  const calib = tokensOf(sharedPath('data', 'text', 'tinystories_sample_cs336.txt'), encode, Math.min(profileTokens, spec.maxPositionEmbeddings), 0);
  const held = tokensOf(sharedPath('data', 'text', 'tinystories_niklas6.txt'), encode, Math.min(evalTokens, spec.maxPositionEmbeddings), 20_000);
  const profile = await profileShards(runner, spec, sti.dir, calib, [32, 8, 4, 2], 'tinystories_sample_cs336.txt');
  const shards = sti.manifest.shards.map((s) => ({
    id: s.id,
    layer: s.layer,
    bytes: (b: ExpertBits) => runner.fileBytes(s.id, b),
    cost: profile.entries[s.id]?.cost ?? null,
  }));
  const total = (b: ExpertBits): number => shards.reduce((a, s) => a + s.bytes(b), 0);
  const fp32 = total(32);
  let full: Awaited<ReturnType<typeof evaluateWidths>>['full'] | undefined;
  const evalBits = async (bits: readonly ExpertBits[]): Promise<{ kl: number; ppl: number; pplFull: number }> => {
    const e = await evaluateWidths(runner, spec, held, (id) => bits[id] ?? 32, full);
    full = e.full;
    return e;
  };
  const uniformAt = new Map<ExpertBits, { kl: number; ppl: number }>();
  for (const b of [8, 4, 2] as const) uniformAt.set(b, await evalBits(shards.map(() => b)));
  const rows: AccuracyRow[] = [];
  const budgets: Array<[string, number]> = [
    ['1/16', fp32 / 16],
    ['1/8', fp32 / 8],
    ['1/4', fp32 / 4],
    ['1/2', fp32 / 2],
    ['= int2 bytes', total(2)],
    ['= int4 bytes', total(4)],
    ['= int8 bytes', total(8)],
  ];
  for (const [label, budget] of budgets) {
    const uni = ([8, 4, 2] as const).find((b) => total(b) <= budget + 0.5) ?? null;
    const w = widthsForBytes({ numLayers: spec.numLayers, shards, choices: [2, 4, 8, 32] }, Math.floor(budget));
    const m = await evalBits(w.bits);
    const histogram: Record<string, number> = { '32': 0, '8': 0, '4': 0, '2': 0 };
    for (const b of w.bits) histogram[String(b)] = (histogram[String(b)] ?? 0) + 1;
    const u = uni === null ? undefined : uniformAt.get(uni);
    rows.push({
      model: name,
      label,
      budgetBytes: Math.floor(budget),
      fp32Bytes: fp32,
      uniform: uni === null || u === undefined ? null : { bits: uni, bytes: total(uni), kl: u.kl, ppl: u.ppl },
      mixed: { bytes: w.bits.reduce((a, b, id) => a + (shards[id]?.bytes(b) ?? 0), 0), kl: m.kl, ppl: m.ppl, histogram },
      pplFp32: m.pplFull,
    });
  }
  await runner.release();
  return rows;
}

function dropCaches(): boolean {
  try {
    spawnSync('sync');
    writeFileSync('/proc/sys/vm/drop_caches', '3');
    return true;
  } catch {
    return false;
  }
}

async function cold(modelDir: string): Promise<{ rows: ColdRow[]; dropped: boolean }> {
  // Build both entries untimed, so each timed run only reads what it serves.
  const cp = loadCheckpoint(modelDir);
  compileModel(cp, { cacheDir, weightDtype: 'fp32' });
  const sti = compileSti(cp, { cacheDir });
  const fp32 = sti.manifest.shards.reduce((a, s) => a + (s.files['32']?.bytes ?? 0), 0);
  const perLayer = fp32 / cp.spec.numLayers;
  const preload = Math.ceil(perLayer * 2);
  const configs: Array<[string, string[]]> = [
    ['(a) load all (dense graph)', ['--mode', 'load-all']],
    ['(b) layer by layer, no buffer, fp32', ['--mode', 'layerwise']],
    ['(c) STI: preload buffer (2 layers) + pipeline, fp32', ['--mode', 'sti', '--bits', '32', '--preload', String(preload)]],
    ['(d) STI: preload buffer (2 layers) + pipeline, 4-bit shards', ['--mode', 'sti', '--bits', '4', '--preload', String(Math.ceil(preload / 6))]],
  ];
  let dropped = true;
  const rows: ColdRow[] = [];
  const repeats = Number(values.repeats);
  const samples = new Map<string, Array<{ ttftMs: number; readyMs: number; firstTokenMs: number; bytesRead: number }>>();
  for (let r = 0; r < repeats; r++) {
    for (const [name, args] of configs) {
      dropped = dropCaches() && dropped;
      const res = spawnSync(
        process.execPath,
        [join(here, 'sti-coldstart.js'), '--model', modelDir, '--cache-dir', cacheDir, '--threads', values.threads, ...args],
        { encoding: 'utf8' },
      );
      if (res.status !== 0) throw new Error(`${name}: ${res.stderr.trim().split('\n').slice(-3).join(' | ')}`);
      const j = JSON.parse(res.stdout.trim().split('\n').pop() ?? '{}') as { ttftMs: number; readyMs: number; firstTokenMs: number; bytesRead: number };
      samples.set(name, [...(samples.get(name) ?? []), j]);
    }
  }
  for (const [name] of configs) {
    const s = samples.get(name) ?? [];
    rows.push({
      config: name,
      ttftMs: median(s.map((x) => x.ttftMs)),
      readyMs: median(s.map((x) => x.readyMs)),
      firstTokenMs: median(s.map((x) => x.firstTokenMs)),
      bytesRead: s[0]?.bytesRead ?? 0,
      runs: s.length,
    });
  }
  return { rows, dropped };
}

const profileTokens = quick ? 64 : 256;
const evalTokens = quick ? 128 : 512;
const rows: AccuracyRow[] = [];
const skipped: string[] = [];
const models: Array<[string, string]> = [
  ['stories260K', sharedPath('models', 'stories260K')],
  ['longctx', resolve(here, '../../../test/fixtures/models/longctx')],
];
for (const [name, dir] of quick ? models.slice(0, 1) : models) {
  if (!existsSync(join(dir, 'config.json')) || !existsSync(sharedPath('data', 'text'))) {
    skipped.push(`${name}: ${dir} or ../shared/data/text not found`);
    continue;
  }
  rows.push(...(await accuracy(name, dir, profileTokens, evalTokens)));
}
const coldModel = values['cold-model'] ?? null;
const c = coldModel === null ? { rows: [], dropped: false } : await cold(coldModel);
const result: StiBenchResult = { accuracy: rows, accuracySkipped: skipped, profileTokens, evalTokens, cold: c.rows, coldModel, cacheDropped: c.dropped };
process.stdout.write(`${JSON.stringify(result)}\n`);
