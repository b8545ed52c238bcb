/**
 * `npm run bench -- [--quick] [--out DIR]`: the CAP report. Every benchmark runs
 * in its own process; baselines (machine ceilings, batch-1, full attention,
 * resident experts) run in the same invocation. Writes DIR/results.json,
 * DIR/report.md and DIR/*.svg.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import type { EngineBenchResult } from './engine-bench.js';
import type { DecodeFloorResult } from './decode-floor-bench.js';
import type { GraphBenchResult } from './graph-bench.js';
import { graphSection } from './graph-report.js';
import type { LlamaCppBenchResult } from './llama-cpp-bench.js';
import { llamaCppSection, type LlamaCppOutcome } from './llama-cpp-report.js';
import type { GrammarBenchResult } from './grammar-bench.js';
import type { LoadResult } from './load-bench.js';
import type { ScaleOutResult } from './scale-out-bench.js';
import type { FidelityResult } from './policy-fidelity-bench.js';
import type { PolicyLatencyResult } from './policy-latency-bench.js';
import type { ServingResult } from './serving-bench.js';
import { servingSection } from './serving-report.js';
import type { VariantMemoryResult } from './variant-memory-bench.js';
import { capTable, frontierCharts } from './ruler-report.js';
import { median } from './stats.js';
import { lineChart, type Series } from './svg-chart.js';
import type { StiBenchResult } from './sti-bench.js';
import { stiSection } from './sti-report.js';
import type { KvDtypeResult } from './kv-dtype-bench.js';
import { kvDtypeSection } from './kv-dtype-report.js';
import { ensureModel, f, log, mb, ok, runJson, runRuler, type CeilingsResult, type CompressionBenchResult, type MoeResult } from './run-helpers.js';

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      out: { type: 'string', default: 'bench-out' },
      threads: { type: 'string', default: '2' },
      contexts: { type: 'string' },
      'per-task': { type: 'string', default: '3' },
      'ruler-only': { type: 'boolean', default: false },
      'ruler-model': { type: 'string' },
      tasks: { type: 'string' },
      /** llama.cpp's llama-bench and GGUFs of the bench model (fp32=F32,int8=Q8_0,int4=Q4_0): the report sets capserve beside it. */
      'llama-bench': { type: 'string' },
      gguf: { type: 'string' },
    },
  });
  const quick = values.quick;
  const out = resolve(values.out);
  mkdirSync(out, { recursive: true });
  const threads = values.threads;
  const preset = quick ? 'small' : '135m';
  const t0 = Date.now();
  if (values['ruler-only']) {
    // Only the long-context table (e.g. for a model not committed yet): DIR/long-context.md, results and charts.
    const { ruler, rulerSkipped } = runRuler(values);
    writeFileSync(join(out, 'long-context.json'), `${JSON.stringify({ date: new Date().toISOString(), ruler, rulerSkipped }, null, 2)}\n`);
    const charts = frontierCharts(ruler, out);
    const lines = [
      `# capserve long-context CAP table`,
      ``,
      `Command: \`npm run bench -- ${process.argv.slice(2).join(' ')}\`. Date: ${new Date().toISOString()}.`,
      rulerSkipped ? `Incomplete: ${rulerSkipped}` : '',
      ``,
      ...capTable(ruler),
      ``,
      ...charts.map((c) => `![${c}](${c})`),
      ``,
    ];
    writeFileSync(join(out, 'long-context.md'), lines.join('\n'));
    log(`wrote ${join(out, 'long-context.md')} in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
    return;
  }
  const dense = await ensureModel('llama', preset);

  const base = runJson<CeilingsResult>('ceilings-bench.js', [threads]);
  if (!ok(base)) throw new Error(base.error);
  const m = base.machine;
  log(`machine: ${m.cpuModel}, ${m.cores} cores, ${m.memoryGiB} GiB, node ${m.node}, onnxruntime ${m.onnxruntime}`);
  log(
    `ceilings (${threads} threads, measured through onnxruntime): read bandwidth ${f(base.ceilings.readBandwidthGBs)} GB/s, fp32 GEMM ${f(base.ceilings.gemmGflops)} GFLOP/s`,
  );

  const engine: EngineBenchResult[] = [];
  for (const dtype of ['fp32', 'int8', 'int4', 'w8a8']) {
    const r = runJson<EngineBenchResult>('engine-bench.js', [
      '--model',
      dense,
      '--dtype',
      dtype,
      '--steps',
      quick ? '16' : '64',
      '--prefill',
      quick ? '128,256' : '512,1024',
      '--threads',
      threads,
    ]);
    if (!ok(r)) continue;
    engine.push(r);
    const ceilingTps = (base.ceilings.readBandwidthGBs * 1e9) / r.weightBytes;
    log(
      `${dtype}: decode ${f(r.decodeTokensPerSecond)} tok/s (${f((100 * r.decodeTokensPerSecond) / ceilingTps)}% of the ${f(ceilingTps)} tok/s bandwidth ceiling), ` +
        `prefill ${r.prefills.map((p) => `${p.tokens} tokens ${f(p.tokensPerSecond)} tok/s`).join(', ')} (${f((100 * r.prefillGflops) / base.ceilings.gemmGflops)}% of the fp32 GEMM peak), ` +
        `batch-8 ${f(r.batch8TokensPerSecond)} tok/s (${f(r.batch8TokensPerSecond / r.decodeTokensPerSecond, 2)}x), overhead ${f(r.overheadPerTokenMs, 2)} ms/token`,
    );
  }

  // The graph itself: served vs plain-only graph, onnxruntime profile per step, RSS per variant set,
  // and the decode step against its matrix products alone.
  const graph: GraphBenchResult[] = [];
  const memory: VariantMemoryResult[] = [];
  const decodeFloor: DecodeFloorResult[] = [];
  for (const dtype of quick ? ['int8'] : ['fp32', 'int8', 'int4']) {
    const floor = runJson<DecodeFloorResult>('decode-floor-bench.js', [
      '--model',
      dense,
      '--dtype',
      dtype,
      '--steps',
      quick ? '16' : '48',
      '--threads',
      threads,
    ]);
    if (ok(floor)) {
      decodeFloor.push(floor);
      log(
        `${dtype} decode ${f(floor.decodeMs, 2)} ms; its matrix products alone ${f(floor.matmulFloorMs, 2)} ms; everything else ${f(floor.overheadMs, 2)} ms`,
      );
    }
    const g = runJson<GraphBenchResult>('graph-bench.js', [
      '--model',
      dense,
      '--dtype',
      dtype,
      '--steps',
      quick ? '8' : '48',
      '--prefill',
      quick ? '128' : '512,1024',
      '--runs',
      quick ? '1' : '3',
      '--profile-prefill',
      quick ? '64' : '512',
      '--threads',
      threads,
    ]);
    if (ok(g)) {
      graph.push(g);
      log(
        `${dtype} graph: decode ${f(g.decodeMs.served, 2)} ms served vs ${f(g.decodeMs.plainOnly, 2)} ms plain-only (${f(g.decodeSpeedup, 3)}x)` +
          (g.profile
            ? `; ${f(g.profile.served.decode.nodesPerStep, 0)} nodes per decode step, matmuls ${f(100 * g.profile.served.decode.matmulShare, 0)}% of kernel time`
            : ''),
      );
    }
    if (dtype !== 'int4') {
      const v = runJson<VariantMemoryResult>('variant-memory-bench.js', [
        '--model',
        dense,
        '--dtype',
        dtype,
        '--prompt',
        quick ? '64' : '256',
        '--threads',
        threads,
      ]);
      if (ok(v)) {
        memory.push(v);
        log(
          `${dtype} memory: RSS with every variant in use ${f(v.allVariantsOverPlain, 3)}x the plain model's; first tokens ${v.steps.map((s) => `${s.policy} ${f(s.firstTokenMs, 0)} ms`).join(', ')}`,
        );
      }
    }
  }

  // Constrained decoding: the grammar's time per token against the fp32 forward step (the issue's bar: 10% at batch 1).
  const grammar = runJson<GrammarBenchResult>('grammar-bench.js', ['--model', dense, '--steps', quick ? '16' : '64', '--threads', threads]);
  const fp32Step = engine.find((e) => e.dtype === 'fp32')?.decodeStepMs.p50 ?? null;
  if (ok(grammar)) {
    log(
      `grammar: ${f(grammar.grammarMsPerTokenWarm, 3)} ms/token warm, ${f(grammar.grammarMsPerTokenCold, 3)} cold (${grammar.automatonStates} states)` +
        (fp32Step !== null
          ? `, ${f((100 * grammar.grammarMsPerTokenWarm) / fp32Step, 1)}% / ${f((100 * grammar.grammarMsPerTokenCold) / fp32Step, 1)}% of the fp32 decode step`
          : '') +
        `; served ITL p50 constrained/unconstrained ${f(grammar.itlRatioWarm, 2)}x`,
    );
  }

  const load = runJson<LoadResult>('load-bench.js', [
    '--model',
    dense,
    '--clients',
    quick ? '16' : '64',
    '--max-tokens',
    quick ? '16' : '64',
    '--threads',
    threads,
  ]);
  if (ok(load)) {
    log(
      `load: ${load.loaded.clients} streaming clients ${f(load.loaded.tokensPerSecond)} tok/s vs batch-1 ${f(load.baseline.tokensPerSecond)} tok/s ` +
        `(${f(load.loaded.tokensPerSecond / load.baseline.tokensPerSecond, 2)}x); TTFT p50/p99 ${f(load.loaded.ttftMs.p50, 0)}/${f(load.loaded.ttftMs.p99, 0)} ms; ITL p50/p99 ${f(load.loaded.itlMs.p50, 1)}/${f(load.loaded.itlMs.p99, 1)} ms`,
    );
  }

  // Replicas behind nginx against one replica (stories260K, Debian's nginx); not in --quick (two minutes of load).
  const scaleOut: ScaleOutResult | { error: string } = quick ? { error: 'not run with --quick' } : runJson<ScaleOutResult>('scale-out-bench.js', []);
  if (ok(scaleOut)) {
    log(
      `scale-out: ${scaleOut.replicas} replicas behind nginx ${f(scaleOut.many.medianTokensPerSecond)} tok/s vs one ${f(scaleOut.one.medianTokensPerSecond)} tok/s (${f(scaleOut.ratio, 2)}x), ${scaleOut.clients} clients`,
    );
  }

  // No stall (chunked-prefill budget) and prefix cache, on vs off in the same run; quick: the small model, one request per client.
  const serving = runJson<ServingResult>(
    'serving-bench.js',
    quick
      ? [
          '--model',
          dense,
          '--threads',
          threads,
          '--rounds',
          '1',
          '--prompt-tokens',
          '128',
          '--max-tokens',
          '16',
          '--stagger-ms',
          '30',
          '--conversations',
          '2',
          '--system-tokens',
          '200',
        ]
      : ['--model', dense, '--threads', threads],
  );
  if (ok(serving)) {
    const c = Object.keys(serving.itlP99Ratio).join('/');
    const list = (m: Readonly<Record<string, number>>): string =>
      Object.values(m)
        .map((x) => f(x, 2))
        .join('/');
    log(
      `serving: ITL p99 on/off at ${c} clients ${list(serving.itlP99Ratio)}x, TTFT p50 ${list(serving.ttftP50Ratio)}x; second-turn TTFT prefix cache on/off ${f(serving.turn2TtftRatio, 2)}x`,
    );
    const target = serving.vsOff['latency-target'];
    if (target) log(`serving: latency target 200 ms / off at ${c} clients: ITL p99 ${list(target.itlP99)}x, TTFT p50 ${list(target.ttftP50)}x`);
    const sleeping = serving.vsOff['sleeping'];
    if (sleeping) log(`serving: sleeping threads / off at ${c} clients: ITL p99 ${list(sleeping.itlP99)}x, tok/s ${list(sleeping.tokensPerSecond)}x`);
  }

  const fidelity = runJson<FidelityResult>(
    'policy-fidelity-bench.js',
    quick ? ['--passages', '3', '--continuation', '24'] : ['--passages', '16', '--continuation', '96'],
  );
  const latency = runJson<PolicyLatencyResult>('policy-latency-bench.js', [
    '--model',
    dense,
    '--contexts',
    quick ? '512,2048' : '1024,4096,16384,32768',
    '--steps',
    quick ? '6' : '12',
    '--threads',
    threads,
  ]);
  const kvDtype = runJson<KvDtypeResult>('kv-dtype-bench.js', [
    ...['--model', dense, '--threads', threads],
    ...(quick ? ['--contexts', '512,2048', '--steps', '12'] : ['--contexts', '4096,16384,32768', '--steps', '12']),
  ]);
  const compression = runJson<CompressionBenchResult>(
    'compression-bench.js',
    quick ? ['--passages', '20', '--runs', '1', '--prompt-tokens', '1000'] : ['--passages', '100', '--runs', '5'],
  );
  const moe = runJson<MoeResult>(
    'moe-bench.js',
    quick
      ? ['--preset', 'small', '--steps', '12', '--repeats', '1', '--out', join(tmpdir(), 'capserve-moe-bench')]
      : ['--preset', '135m', '--steps', '48', '--repeats', '3', '--out', join(tmpdir(), 'capserve-moe-bench')],
  );

  const sti = runJson<StiBenchResult>('sti-bench.js', [
    '--cold-model',
    dense,
    '--threads',
    threads,
    '--repeats',
    quick ? '1' : '3',
    '--out',
    join(tmpdir(), 'capserve-sti-bench'),
    ...(quick ? ['--quick'] : []),
  ]);

  const llamaBench = values['llama-bench'];
  const llamaCpp: LlamaCppOutcome =
    llamaBench !== undefined && values.gguf !== undefined
      ? runJson<LlamaCppBenchResult>('llama-cpp-bench.js', [
          '--model',
          dense,
          '--llama-bench',
          llamaBench,
          '--gguf',
          values.gguf,
          '--threads',
          threads,
          ...(quick ? ['--rounds', '1', '--prefill', '128,256', '--steps', '16'] : []),
        ])
      : { skipped: `pass --llama-bench PATH and --gguf fp32=F32.gguf,int8=Q8_0.gguf,int4=Q4_0.gguf (llama.cpp's GGUFs of ${dense})` };
  if ('rows' in llamaCpp) for (const r of llamaCpp.rows) log(`llama.cpp: ${r.dtype} ${r.test}: ${f(r.ratio, 2)}x llama.cpp's ${r.llamaType}`);

  const { ruler, rulerSkipped } = runRuler(values);

  const results = {
    date: new Date().toISOString(),
    quick,
    model: dense,
    base,
    engine,
    graph,
    memory,
    decodeFloor,
    llamaCpp,
    grammar,
    load,
    serving,
    scaleOut,
    fidelity,
    latency,
    kvDtype,
    compression,
    moe,
    sti,
    ruler,
    rulerSkipped,
    seconds: (Date.now() - t0) / 1000,
  };
  writeFileSync(join(out, 'results.json'), `${JSON.stringify(results, null, 2)}\n`);

  const charts: string[] = [];
  if (ok(fidelity) && fidelity.points.length > 0) {
    const methods = [...new Set(fidelity.points.map((p) => p.method))];
    const series: Series[] = methods.map((method) => ({
      name: method,
      points: fidelity.points.filter((p) => p.method === method).map((p) => [p.budget, p.kl] as const),
    }));
    writeFileSync(
      join(out, 'accuracy-vs-budget.svg'),
      lineChart(series, {
        title: 'Accuracy cost vs budget (stories260K, real text)',
        xLabel: 'budget (share of context)',
        yLabel: 'KL(full || policy), nats',
        logY: true,
      }),
    );
    charts.push('accuracy-vs-budget.svg');
  }
  if (ok(latency)) {
    const entries = Object.entries(latency.series);
    writeFileSync(
      join(out, 'latency-vs-context.svg'),
      lineChart(
        entries.map(([name, pts]) => ({ name, points: pts.map((p) => [p.context, p.stepMsP50] as const) })),
        { title: 'Decode step latency vs context', xLabel: 'context tokens', yLabel: 'ms per token (p50)', logX: true },
      ),
    );
    writeFileSync(
      join(out, 'memory-vs-context.svg'),
      lineChart(
        entries.map(([name, pts]) => ({ name, points: pts.map((p) => [p.context, p.kvBytes / 1e6] as const) })),
        { title: 'KV cache memory vs context', xLabel: 'context tokens', yLabel: 'KV MB', logX: true, logY: true },
      ),
    );
    charts.push('latency-vs-context.svg', 'memory-vs-context.svg');
  }
  const stiLines = stiSection(sti, out);
  charts.push(...stiLines.charts);
  if (ok(moe)) {
    const pts = Object.entries(moe.configs).map(([name, c]) => ({
      name: `(${name}) ${c.description}`,
      points: [[Math.max(c.residentExpertBytesPeak, 1) / 1e6, c.decodeTokensPerSecond] as const],
    }));
    writeFileSync(
      join(out, 'moe-tokens-vs-budget.svg'),
      lineChart(pts, { title: 'MoE decode tokens/s vs resident expert memory', xLabel: 'resident expert MB (peak)', yLabel: 'tokens/s' }),
    );
    charts.push('moe-tokens-vs-budget.svg');
  }

  charts.push(...frontierCharts(ruler, out));
  const capRows = capTable(ruler);

  const fp32 = engine.find((e) => e.dtype === 'fp32');
  const int8 = engine.find((e) => e.dtype === 'int8');
  const int4 = engine.find((e) => e.dtype === 'int4');
  const w8a8 = engine.find((e) => e.dtype === 'w8a8');
  const lines: string[] = [
    `# capserve CAP report`,
    ``,
    `Command: \`npm run bench -- ${process.argv.slice(2).join(' ')}\` (${((Date.now() - t0) / 1000).toFixed(0)} s). Date: ${results.date}.`,
    `Machine: ${m.cpuModel}, ${m.cores} cores, ${m.memoryGiB} GiB, Node ${m.node}, onnxruntime ${m.onnxruntime}; ${threads} inference threads.`,
    `Ceilings measured in the same run through onnxruntime: read bandwidth ${f(base.ceilings.readBandwidthGBs)} GB/s, fp32 GEMM ${f(base.ceilings.gemmGflops)} GFLOP/s.`,
    `Speed and memory: generated llama \`${preset}\`${fp32 ? ` (${f(fp32.parameters / 1e6)}M parameters)` : ''}. Accuracy: the real stories260K model on TinyStories text.`,
    ``,
    `## CAP table`,
    ``,
    rulerSkipped ? `Long-context table incomplete: ${rulerSkipped}.` : '',
    `Measured per policy on the long-context model the project trains (test/fixtures/models/longctx, trained context 8,192) with RULER-style tasks hidden in real text (test/bench/ruler), one request at a time. ` +
      `A: task accuracy (RULER string_match_all) with its 95% Wilson interval and item count; KL(full || policy) and top-1 agreement of the next-token distributions while the policy's greedy answer equals full attention's. ` +
      `P: time to first token (compression, prefill, scoring, eviction) and decode ms/token, medians, wall clock around the engine steps. C: peak and decode-time KV MiB from the KV pool's allocation (medians). ` +
      `Budget: share of the prompt kept in the KV cache (eviction), attended per decode step (quest), in each prefill query's window (sink-window), or kept by compression.`,
    ``,
    ...capRows,
    ``,
    `## Short-context fidelity (stories260K)`,
    ``,
    ok(fidelity) && fidelity.points.length > 0
      ? `Teacher-forced over ${fidelity.passages} TinyStories passages (${fidelity.promptTokens}-token prompt, ${fidelity.continuationTokens}-token continuation) on the real stories260K model. kivi (8/4/2 bits) and kv-fp16 keep every entry: their budget is bytes per token over the fp32 cache's.\n\n| policy | budget | kept | KL | top-1 | ppl (full) |\n|---|---|---|---|---|---|\n` +
        fidelity.points
          .map(
            (p) =>
              `| ${p.method} | ${p.budget} | ${f(p.kvRetained, 3)} | ${f(p.kl, 4)} | ${f(p.top1, 3)} | ${f(p.perplexity, 3)} (${f(p.fullPerplexity, 3)}) |`,
          )
          .join('\n')
      : `fidelity bench: ${ok(fidelity) ? (fidelity.skipped ?? 'no points') : fidelity.error}`,
    ``,
    `## Engine (P axis baseline)`,
    ``,
    `| weights | MB | decode tok/s (p50) | decode p99 ms | of bandwidth ceiling | prefill tok/s (tokens) | of fp32 GEMM peak (longest; integer kernels exceed it) | batch-8 tok/s | overhead ms/token |`,
    `|---|---|---|---|---|---|---|---|---|`,
    ...engine.map((r) => {
      const ceilingTps = (base.ceilings.readBandwidthGBs * 1e9) / r.weightBytes;
      return `| ${r.dtype} | ${mb(r.weightBytes)} | ${f(r.decodeTokensPerSecond)} | ${f(r.decodeStepMs.p99, 2)} | ${f((100 * r.decodeTokensPerSecond) / ceilingTps)}% | ${r.prefills.map((p) => `${f(p.tokensPerSecond)} (${p.tokens})`).join(' / ')} | ${f((100 * r.prefillGflops) / base.ceilings.gemmGflops)}% | ${f(r.batch8TokensPerSecond)} (${f(r.batch8TokensPerSecond / r.decodeTokensPerSecond, 2)}x) | ${f(r.overheadPerTokenMs, 2)} |`;
    }),
    ``,
    fp32 && int8 ? `int8 decode / fp32 decode: ${f(int8.decodeTokensPerSecond / fp32.decodeTokensPerSecond, 2)}x. ` : '',
    int8 && int4 ? `int4 decode / int8 decode: ${f(int4.decodeTokensPerSecond / int8.decodeTokensPerSecond, 2)}x. ` : '',
    int8 && w8a8
      ? `w8a8 / int8: prefill ${w8a8.prefills.map((p, i) => `${f(p.tokensPerSecond / (int8.prefills[i]?.tokensPerSecond ?? NaN), 2)}x at ${p.tokens}`).join(', ')}, decode ${f(w8a8.decodeTokensPerSecond / int8.decodeTokensPerSecond, 2)}x (w8a8: int8 weights per channel, int8 activations per token, integer GEMM). `
      : '',
    ...engine.map((r) => {
      const g = r.batchGather;
      return `${r.dtype} batch-${g.batch} decode at ${g.context} positions: ${f(g.keptMs)} ms per step with the decode group's gathered past kept across steps, ${f(g.freshMs)} ms gathering every row afresh (${f(g.freshMs / g.keptMs, 2)}x; building the inputs ${f(g.keptInputsMs, 1)} against ${f(g.freshInputsMs, 1)} ms; same process, taking turns). `;
    }),
    `Each weight dtype runs in its own process, one after the other: these ratios are between processes of the same run.`,
    `Overhead per token = served inter-token p50 (worker, scheduler, sampling, detokenization, messaging) minus the in-process forward p50.`,
    ``,
    ok(grammar)
      ? `Constrained decoding (a JSON array of free strings, the widest masks; batch 1, temperature 1): grammar time ${f(grammar.grammarMsPerTokenWarm, 3)} ms/token warm, ${f(grammar.grammarMsPerTokenCold, 3)} ms/token cold` +
        (fp32Step !== null
          ? ` (${f((100 * grammar.grammarMsPerTokenWarm) / fp32Step, 1)}% / ${f((100 * grammar.grammarMsPerTokenCold) / fp32Step, 1)}% of the fp32 decode step)`
          : '') +
        `; served ITL p50 constrained / unconstrained ${f(grammar.itlRatioWarm, 2)}x warm, ${f(grammar.itlRatioCold, 2)}x cold.` +
        `\n\n| grammar | ITL p50 ratio (warm) | ITL p10 ratio | CPU/token ratio | grammar ms/token warm | cold | states |\n|---|---|---|---|---|---|---|\n` +
        grammar.cases
          .map(
            (c) =>
              `| ${c.name} | ${f(c.itlRatioWarm, 3)} | ${f(c.itlP10RatioWarm, 3)} | ${f(c.cpuRatioWarm, 3)} | ${f(c.grammarMsPerTokenWarm, 3)} | ${f(c.grammarMsPerTokenCold, 3)} | ${c.automatonStates} |`,
          )
          .join('\n') +
        `\n\nRatios are medians over ${grammar.rounds} rounds of constrained / unconstrained runs in the same round (1-minute load average ${f(grammar.loadAverage[0], 1)} to ${f(grammar.loadAverage[1], 1)} on ${grammar.cpus} CPUs).`
      : `grammar bench: ${grammar.error}`,
    ``,
    ...graphSection(graph, memory, engine, base.ceilings.readBandwidthGBs, decodeFloor),
    ...llamaCppSection(llamaCpp),
    `## Serving load`,
    ``,
    ok(load)
      ? `| clients | tok/s | TTFT p50 ms | TTFT p99 ms | ITL p50 ms | ITL p99 ms |\n|---|---|---|---|---|---|\n` +
        [load.baseline, load.loaded]
          .map(
            (r) => `| ${r.clients} | ${f(r.tokensPerSecond)} | ${f(r.ttftMs.p50, 0)} | ${f(r.ttftMs.p99, 0)} | ${f(r.itlMs.p50, 1)} | ${f(r.itlMs.p99, 1)} |`,
          )
          .join('\n') +
        `\n\nAggregate ${f(load.loaded.tokensPerSecond / load.baseline.tokensPerSecond, 2)}x batch-1, through the real HTTP server (SSE), ${load.maxTokens} tokens per client.`
      : `load run failed: ${load.error}`,
    ``,
    ...servingSection(serving),
    ``,
    `## Scale-out (replicas behind nginx)`,
    ``,
    ok(scaleOut)
      ? `The same load (${scaleOut.clients} streaming chat clients, ${scaleOut.requests} requests of ${scaleOut.maxTokens} tokens, stories260K) through nginx with deploy/nginx/capserve.conf in front of one replica, then ${scaleOut.replicas}, alternating, ${scaleOut.one.runs.length} rounds; every replica at engine.threads=1.\n\n` +
        `| replicas | tok/s (median) | rounds tok/s | request latency p50 / p99 ms (median over rounds) |\n|---|---|---|---|\n` +
        [[1, scaleOut.one] as const, [scaleOut.replicas, scaleOut.many] as const]
          .map(
            ([n, c]) =>
              `| ${n} | ${f(c.medianTokensPerSecond)} | ${c.runs.map((r) => f(r.tokensPerSecond)).join(', ')} | ${f(median(c.runs.map((r) => r.latencyMs.p50)), 0)} / ${f(median(c.runs.map((r) => r.latencyMs.p99)), 0)} |`,
          )
          .join('\n') +
        `\n\n${f(scaleOut.ratio, 2)}x one replica on ${scaleOut.machine.cores} cores.`
      : `scale-out bench: ${scaleOut.error}`,
    ``,
    `## Context compression`,
    ``,
    ok(compression)
      ? `| method | rate | kept | NLL | random NLL | full NLL |\n|---|---|---|---|---|---|\n` +
        Object.entries(compression.fidelity.methods)
          .flatMap(([method, rs]) => rs.map((r) => `| ${method} | ${r.rate} | ${f(r.kept, 3)} | ${f(r.nll, 3)} | ${f(r.random, 3)} | ${f(r.full, 3)} |`))
          .join('\n') +
        `\n\nNext-sentence NLL (nats/token) on TinyStories given the compressed context (stories260K); compression time per 1K tokens in results.json.`
      : `compression bench failed: ${compression.error}`,
    ``,
    `## MoE expert offload`,
    ``,
    ok(moe)
      ? `Experts ${mb(moe.expertBytesFp32)} MB fp32, budget ${mb(moe.budgetBytes)} MB.\n\n| config | tok/s | peak RSS MiB | hit rate | KL vs (a) | top-1 vs (a) |\n|---|---|---|---|---|---|\n` +
        Object.entries(moe.configs)
          .map(
            ([k, c]) =>
              `| (${k}) ${c.description} | ${f(c.decodeTokensPerSecond)} | ${f(c.peakRssMiB, 0)} | ${f(c.hitRate, 2)} | ${f(c.klVsResident, 4)} | ${f(c.top1VsResident, 3)} |`,
          )
          .join('\n') +
        `\n\n(d)/(b) = ${f(moe.dOverB, 2)}x, (d)/(a) = ${f(moe.dOverA, 2)}x.`
      : `MoE bench failed: ${moe.error}`,
    ``,
    ...kvDtypeSection(kvDtype),
    ...stiLines.lines,
    `## Charts`,
    ``,
    ...charts.map((c) => `![${c}](${c})`),
    ``,
  ];
  writeFileSync(join(out, 'report.md'), lines.join('\n'));
  log(`wrote ${join(out, 'report.md')}, results.json and ${charts.length} charts in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
}

main().catch((err: unknown) => {
  process.stderr.write(`bench: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
