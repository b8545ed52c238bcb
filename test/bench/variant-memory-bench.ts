/**
 * Resident memory and first-token time per set of graph variants in use, in its
 * own process: the served engine (worker thread, same process) answers a plain
 * request, then one whose policy needs attention statistics (snapkv), then one
 * that selects Quest pages, then plain again. After each, the process RSS (and
 * PSS from /proc/self/smaps_rollup where Linux provides it) and the request's
 * time to first token. A variant loaded on first use shows as a jump in RSS and
 * a long first token; variants sharing the weights show neither. Prints one JSON line.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { createLocalEngine } from '../../src/engine/local-engine.js';
import { DEFAULT_SAMPLING } from '../../src/engine/types.js';
import type { WeightDtype } from '../../src/model/compile/decoder-graph.js';
import { parsePolicyFile, type Policy } from '../../src/policies/registry.js';

export interface VariantMemoryStep {
  /** The policy of this request and the graph variants in use after it. */
  readonly policy: string;
  readonly variantsInUse: string;
  readonly rssBytes: number;
  readonly pssBytes: number | null;
  readonly firstTokenMs: number;
}

export interface VariantMemoryResult {
  readonly dtype: WeightDtype;
  readonly weightBytes: number;
  /** RSS once the engine is ready, before any request. */
  readonly readyRssBytes: number;
  readonly steps: readonly VariantMemoryStep[];
  /** RSS with every variant in use over RSS after the first plain request. */
  readonly allVariantsOverPlain: number;
}

function pss(): number | null {
  try {
    const m = /^Pss:\s+(\d+) kB/m.exec(readFileSync('/proc/self/smaps_rollup', 'utf8'));
    return m?.[1] !== undefined ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

const POLICIES: Readonly<Record<string, { readonly policy: Policy | null; readonly variant: string }>> = {
  full: { policy: null, variant: 'plain' },
  snapkv: {
    policy: parsePolicyFile(
      'name: snapkv\nkind: kv-eviction\nmethod: snapkv\nparams: {budget: 0.5, observationWindow: 32, kernelSize: 7, pooling: max, compressEvery: 0}\n',
      '<bench>',
    ),
    variant: 'stats',
  },
  quest: {
    policy: parsePolicyFile('name: quest\nkind: sparse-attention\nmethod: quest\nparams: {pageSize: 16, budget: 0.25, denseLayers: 2}\n', '<bench>'),
    variant: 'quest',
  },
};

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      model: { type: 'string' },
      dtype: { type: 'string', default: 'fp32' },
      threads: { type: 'string', default: '2' },
      prompt: { type: 'string', default: '256' },
      'cache-dir': { type: 'string', default: '.cache/compiled' },
    },
  });
  if (!values.model) throw new Error('--model is required');
  const dtype = values.dtype as WeightDtype;
  const engine = await createLocalEngine({
    modelDir: values.model,
    cacheDir: values['cache-dir'],
    weightDtype: dtype,
    threads: Number(values.threads),
    maxConcurrent: 1,
  });
  const info = engine.readyInfo;
  if (info === null) throw new Error('the engine is not ready');
  const V = info.spec.vocabSize;
  const promptLen = Number(values.prompt);
  const readyRssBytes = process.memoryUsage().rss;
  const steps: VariantMemoryStep[] = [];
  const inUse = new Set<string>();
  let n = 0;
  for (const name of ['full', 'snapkv', 'quest', 'full']) {
    const entry = POLICIES[name];
    if (entry === undefined) throw new Error(`unknown policy ${name}`);
    n += 1;
    const promptTokens = Array.from({ length: promptLen }, (_, i) => 10 + ((i * 37 + n * 11) % (V - 20)));
    const t0 = performance.now();
    let first = -1;
    for await (const ev of engine.generate({
      id: `mem-${n}`,
      promptTokens,
      policy: name,
      ...(entry.policy !== null ? { servingPolicy: entry.policy } : {}),
      sampling: { ...DEFAULT_SAMPLING, temperature: 0, maxTokens: 8, ignoreEos: true },
    })) {
      if (ev.type === 'token' && first < 0) first = performance.now() - t0;
    }
    inUse.add(entry.variant);
    steps.push({ policy: name, variantsInUse: [...inUse].join('+'), rssBytes: process.memoryUsage().rss, pssBytes: pss(), firstTokenMs: first });
  }
  await engine.close();
  const plain = steps[0]?.rssBytes ?? 1;
  const all = Math.max(...steps.map((s) => s.rssBytes));
  const result: VariantMemoryResult = { dtype, weightBytes: info.weightBytes, readyRssBytes, steps, allVariantsOverPlain: all / plain };
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`variant-memory-bench: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
