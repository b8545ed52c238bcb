/**
 * What the CAP report's driver (run.ts) shares across its sections: running one
 * benchmark script in its own process and reading its JSON line, the result
 * shapes of the sections it reads without their own report module, number
 * formatting, the generated bench models, and the long-context (RULER) table.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createModel } from '../../src/model/create/create-model.js';
import type { MachineInfo } from './machine.js';
import { ALL_METHODS } from './ruler/items.js';
import type { RulerBenchResult } from './ruler-bench.js';

export const here = dirname(fileURLToPath(import.meta.url));

export interface CeilingsResult {
  readonly machine: MachineInfo;
  readonly threads: number;
  readonly ceilings: { readonly readBandwidthGBs: number; readonly gemmGflops: number };
}

export interface MoeConfigSummary {
  readonly description: string;
  readonly decodeTokensPerSecond: number;
  readonly peakRssMiB: number;
  readonly hitRate: number;
  readonly residentExpertBytesPeak: number;
  readonly klVsResident: number;
  readonly top1VsResident: number;
  readonly predictionAccuracy: number;
}

export interface MoeResult {
  readonly expertBytesFp32: number;
  readonly budgetBytes: number;
  readonly configs: Readonly<Record<string, MoeConfigSummary>>;
  readonly dOverA: number;
  readonly dOverB: number;
}

export interface CompressionBenchResult {
  readonly time: Readonly<Record<string, unknown>>;
  readonly fidelity: {
    readonly methods: Readonly<Record<string, readonly { rate: number; kept: number; full: number; nll: number; random: number; winRate: number }[]>>;
  };
}

export function log(line: string): void {
  process.stdout.write(`${line}\n`);
}

export function runJson<T>(script: string, args: string[], timeoutMs = 3_600_000): T | { error: string } {
  const t0 = Date.now();
  const res = spawnSync(process.execPath, [join(here, script), ...args], { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024, timeout: timeoutMs });
  process.stderr.write(`  ${script} ${args.join(' ')}: ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);
  if (res.status !== 0) {
    const error = `${script} failed (exit ${res.status ?? res.signal}): ${res.stderr.trim().split('\n').slice(-5).join(' | ')}`;
    process.stderr.write(`${error}\n`);
    return { error };
  }
  const line = res.stdout.trim().split('\n').pop() ?? '';
  return JSON.parse(line) as T;
}

export function ok<T>(r: T | { error: string }): r is T {
  return !(typeof r === 'object' && r !== null && 'error' in r);
}

export const f = (n: number | undefined, d = 1): string => (n === undefined || !Number.isFinite(n) ? 'n/a' : n.toFixed(d));
export const mb = (bytes: number): string => (bytes / 1e6).toFixed(1);

export async function ensureModel(arch: 'llama' | 'mixtral', preset: 'small' | '135m'): Promise<string> {
  const dir = resolve(`.cache/bench-models/${arch}-${preset}`);
  if (!existsSync(join(dir, 'config.json'))) {
    process.stderr.write(`generating bench model ${arch}/${preset} into ${dir}\n`);
    await createModel({ arch, preset, seed: 0, out: dir });
  }
  return dir;
}

export interface RulerRun {
  readonly ruler: RulerBenchResult[];
  readonly rulerSkipped: string | null;
}

/** The long-context CAP table: the project's long-context model, RULER-style items, each policy measured on its own. */
export function runRuler(values: {
  readonly quick: boolean;
  readonly threads: string;
  readonly contexts?: string | undefined;
  readonly 'per-task': string;
  readonly 'ruler-model'?: string | undefined;
  readonly tasks?: string | undefined;
}): RulerRun {
  const quick = values.quick;
  const threads = values.threads;
  const longModel = resolve(values['ruler-model'] ?? 'test/fixtures/models/longctx');
  const sharedText = resolve(process.env['CAPSERVE_SHARED'] ?? '../shared', 'data', 'text');
  const ruler: RulerBenchResult[] = [];
  let rulerSkipped: string | null = null;
  if (!existsSync(join(longModel, 'model.safetensors')) || !existsSync(sharedText)) {
    rulerSkipped = `long-context model (${longModel}) or text (${sharedText}) absent`;
  } else {
    const contexts = quick ? ['1024'] : (values.contexts ?? '1024,4096,8192').split(',');
    for (const context of contexts) {
      const r = runJson<RulerBenchResult>('ruler-bench.js', [
        '--model',
        longModel,
        '--text',
        sharedText,
        '--context',
        context,
        '--threads',
        threads,
        '--per-task',
        quick ? '1' : values['per-task'],
        '--tasks',
        values.tasks ?? (quick ? 'passkey,niah-single' : 'passkey,niah-single,niah-multikey,niah-multivalue,niah-multiquery,vt'),
        '--methods',
        quick ? 'snapkv,streaming-llm,quest,kivi,longllmlingua' : ALL_METHODS.join(','),
        '--budgets',
        quick ? '0.25' : '0.5,0.25,0.125',
      ]);
      if (ok(r)) ruler.push(r);
      else rulerSkipped = r.error;
    }
  }
  return { ruler, rulerSkipped };
}
