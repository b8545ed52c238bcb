/**
 * The report's "Graph and runtime" section from graph-bench (served graph vs
 * plain-only graph, interleaved in one process; onnxruntime profile per decode
 * step), variant-memory-bench (RSS and first token per set of graph variants in
 * use) and the engine bench's decode rates (dtype ratios against the targets).
 */
import type { DecodeFloorResult } from './decode-floor-bench.js';
import type { EngineBenchResult } from './engine-bench.js';
import type { GraphBenchResult, StepProfile } from './graph-bench.js';
import type { VariantMemoryResult } from './variant-memory-bench.js';

const f = (n: number | undefined, d = 1): string => (n === undefined || !Number.isFinite(n) ? 'n/a' : n.toFixed(d));
const mb = (bytes: number): string => (bytes / 1e6).toFixed(0);
const pct = (x: number): string => `${(100 * x).toFixed(0)}%`;

function profileCell(p: StepProfile): string {
  return `${f(p.nodesPerStep, 0)} nodes, ${f(p.kernelMsPerStep, 2)} ms kernels, matmuls ${pct(p.matmulShare)}, If overhead ${f(p.ifOverheadMsPerStep, 2)} ms; top: ${p.topOps.map((o) => `${o.op} ${pct(o.share)}`).join(', ')}`;
}

export function graphSection(
  graph: readonly GraphBenchResult[],
  memory: readonly VariantMemoryResult[],
  engine: readonly EngineBenchResult[],
  readBandwidthGBs: number,
  decodeFloor: readonly DecodeFloorResult[] = [],
): string[] {
  const rate = (dtype: string): number | undefined => engine.find((e) => e.dtype === dtype)?.decodeTokensPerSecond;
  const fp32 = engine.find((e) => e.dtype === 'fp32');
  const [r32, r8, r4] = [rate('fp32'), rate('int8'), rate('int4')];
  const ratio = (a: number | undefined, b: number | undefined): string => (a !== undefined && b !== undefined ? `${f(a / b, 2)}x` : 'n/a');
  const lines: string[] = [`## Graph and runtime`, ``];
  lines.push(
    `Decode rate ratios (engine table above, same run): int8 / fp32 ${ratio(r8, r32)} (target >= 2), ` +
      `int4 / int8 ${ratio(r4, r8)} (target >= 1.5), ` +
      `fp32 at ${fp32 ? f((100 * fp32.decodeTokensPerSecond * fp32.weightBytes) / (readBandwidthGBs * 1e9)) : 'n/a'}% of the read-bandwidth ceiling (target >= 85%).`,
    ``,
  );
  if (decodeFloor.length > 0) {
    lines.push(
      `Decode step against its matrix products alone (decode-floor-bench: the model's linear layers at its shapes, dtype and block size, chained in one graph, random weights; ` +
        `then the served graph's decode step of the real model, same process, one after the other; medians). "Everything else" is attention, norms, RoPE, layout nodes, the variant switch and the binding.`,
      ``,
      `| weights | decode ms | matrix products alone ms | everything else ms | products' share |`,
      `|---|---|---|---|---|`,
      ...decodeFloor.map(
        (d) => `| ${d.dtype} | ${f(d.decodeMs, 2)} | ${f(d.matmulFloorMs, 2)} | ${f(d.overheadMs, 2)} | ${pct(d.matmulFloorMs / d.decodeMs)} |`,
      ),
      ``,
    );
    const floor = (dtype: string): number | undefined => decodeFloor.find((d) => d.dtype === dtype)?.matmulFloorMs;
    const [p32, p8, p4] = [floor('fp32'), floor('int8'), floor('int4')];
    if (p8 !== undefined && (p32 !== undefined || p4 !== undefined)) {
      lines.push(
        `Ratios of the products alone (what the dtype targets could reach with nothing else in a step): int8 / fp32 ${ratio(p32, p8)}, int4 / int8 ${ratio(p8, p4)}.`,
        ``,
      );
    }
  }
  if (graph.length > 0) {
    lines.push(
      `Served graph (every variant in one graph, per-layer If choosing the attention core) against the plain-only graph, same weights, alternating in blocks of 8 decode steps in one process (the first step of a block not counted: the other session's threads still spin); medians. (decode-floor-bench's decode step is the served graph alone in its process.) ` +
        `Speedup = plain-only time / served time (> 1: the served graph is faster).`,
      ``,
      `| weights | decode ms served | plain-only | speedup | ${graph[0]?.prefill.map((p) => `prefill ${p.tokens} tok/s (speedup)`).join(' | ') ?? ''} |`,
      `|---|---|---|---|${graph[0]?.prefill.map(() => '---|').join('') ?? ''}`,
      ...graph.map(
        (g) =>
          `| ${g.dtype} | ${f(g.decodeMs.served, 2)} | ${f(g.decodeMs.plainOnly, 2)} | ${f(g.decodeSpeedup, 3)}x | ${g.prefill.map((p) => `${f(p.servedTokensPerSecond)} (${f(p.plainOnlyMs / p.servedMs, 3)}x)`).join(' | ')} |`,
      ),
      ``,
      `Per decode step from onnxruntime's profiler (enableProfiling; kernel times exclude the If containers, whose own cost is listed):`,
      ``,
      ...graph.flatMap((g) =>
        g.profile === null
          ? []
          : [
              `- ${g.dtype} served: ${profileCell(g.profile.served.decode)}`,
              `- ${g.dtype} plain-only: ${profileCell(g.profile.plainOnly.decode)}`,
              `- ${g.dtype} prefill of ${g.profile.prefillTokens} tokens, served: ${profileCell(g.profile.served.prefill)}; plain-only: ${profileCell(g.profile.plainOnly.prefill)}`,
            ],
      ),
      ``,
    );
  }
  if (memory.length > 0) {
    lines.push(
      `Resident memory as graph variants come into use (served engine, one request each: full, snapkv (attention statistics), quest, full again; RSS after each; first token of each request):`,
      ``,
      `| weights | weight MB | ready RSS MB | ${memory[0]?.steps.map((s) => `${s.policy} (${s.variantsInUse}) RSS MB / first token ms`).join(' | ') ?? ''} | all / plain |`,
      `|---|---|---|${memory[0]?.steps.map(() => '---|').join('') ?? ''}---|`,
      ...memory.map(
        (m) =>
          `| ${m.dtype} | ${mb(m.weightBytes)} | ${mb(m.readyRssBytes)} | ${m.steps.map((s) => `${mb(s.rssBytes)} / ${f(s.firstTokenMs, 0)}`).join(' | ')} | ${f(m.allVariantsOverPlain, 3)}x |`,
      ),
      ``,
    );
  }
  return lines;
}
