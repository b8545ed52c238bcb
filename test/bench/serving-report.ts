/**
 * The report's serving section from serving-bench.ts's result: per
 * concurrency, TTFT and inter-token latency p50/p99, throughput and RSS with
 * the chunked-prefill budget and prefix cache on and with both off (the
 * behaviour before them, same run), the on/off ratios, and the multi-turn
 * second-turn TTFT with the prefix cache on and off.
 */
import type { ConcurrencyRun, ServingConfigResult, ServingResult } from './serving-bench.js';

const f = (n: number | undefined, d = 1): string => (n === undefined || !Number.isFinite(n) ? 'n/a' : n.toFixed(d));

function rows(config: ServingConfigResult): string[] {
  return config.runs.map(
    (r: ConcurrencyRun) =>
      `| ${config.name} | ${r.clients} | ${r.requests} | ${f(r.tokensPerSecond)} | ${f(r.ttftMs.p50, 0)} | ${f(r.ttftMs.p99, 0)} | ${f(r.itlMs.p50, 1)} | ${f(r.itlMs.p99, 1)} | ${f(r.peakRssMiB, 0)} |`,
  );
}

export function servingSection(result: ServingResult | { readonly error: string }): string[] {
  if ('error' in result) return [`## Serving: no stall and prefix cache`, ``, `serving bench failed: ${result.error}`];
  const r = result;
  const clients = Object.keys(r.itlP99Ratio);
  const mt = (c: ServingConfigResult): string =>
    `| ${c.name} | ${f(c.multiTurn.turn2PromptTokens, 0)} | ${f(c.multiTurn.turn2CachedTokens, 0)} | ${f(c.multiTurn.turn1TtftMs, 0)} | ${f(c.multiTurn.turn2TtftMs, 0)} |`;
  return [
    `## Serving: no stall and prefix cache`,
    ``,
    `The real server on \`${r.model}\` (${r.threads} threads), streaming chat, ${r.promptTokens}-token prompts, ${r.maxTokens} tokens out, closed loop with staggered clients. ` +
      `**on**: as configured (engine.maxTokensPerStep or engine.stepTargetMs, prefix cache); **off**: \`engine.maxTokensPerStep=0\`, \`engine.stepTargetMs=0\` and \`engine.prefixCache.enabled=false\` (the behaviour before them); **latency-target**: \`engine.stepTargetMs=200\` (chunks sized from measured pass costs); **sleeping**: as on, with \`engine.threadSpinning=false\` (onnxruntime's intra-op threads sleep between kernels; every other configuration lets them spin-wait, its default); same run, interleaved. ` +
      `Load average ${f(r.loadAverage[0], 1)} before, ${f(r.loadAverage[1], 1)} after (a shared machine: read ratios, not single numbers).`,
    ``,
    `| config | clients | requests | tok/s | TTFT p50 ms | TTFT p99 ms | ITL p50 ms | ITL p99 ms | peak RSS MiB |`,
    `|---|---|---|---|---|---|---|---|---|`,
    ...rows(r.on),
    ...rows(r.off),
    ...r.sweep.flatMap(rows),
    ``,
    `on / off: ` +
      clients
        .map(
          (c) =>
            `${c} clients: ITL p99 ${f(r.itlP99Ratio[c], 2)}x, ITL p50 ${f(r.itlP50Ratio[c], 2)}x, TTFT p50 ${f(r.ttftP50Ratio[c], 2)}x, tok/s ${f(r.tokensPerSecondRatio[c], 2)}x`,
        )
        .join('; ') +
      '.',
    ``,
    `Every configuration / off (TTFT p50, TTFT p99, ITL p50, ITL p99 at ${clients.join('/')} clients):`,
    ``,
    `| config | TTFT p50 | TTFT p99 | ITL p50 | ITL p99 | tok/s |`,
    `|---|---|---|---|---|---|`,
    ...Object.entries(r.vsOff).map(
      ([name, v]) =>
        `| ${name} | ${clients.map((c) => f(v.ttftP50[c], 2)).join(' / ')} | ${clients.map((c) => f(v.ttftP99[c], 2)).join(' / ')} | ${clients.map((c) => f(v.itlP50[c], 2)).join(' / ')} | ${clients.map((c) => f(v.itlP99[c], 2)).join(' / ')} | ${clients.map((c) => f(v.tokensPerSecond[c], 2)).join(' / ')} |`,
    ),
    ``,
    `Multi-turn (one conversation at a time; turn 2 = system prompt, question, the model's answer, a new question):`,
    ``,
    `| config | turn-2 prompt tokens | served from the prefix cache | turn-1 TTFT ms | turn-2 TTFT ms |`,
    `|---|---|---|---|---|`,
    mt(r.on),
    mt(r.off),
    ``,
    `Second-turn TTFT, prefix cache on / off: ${f(r.turn2TtftRatio, 2)}x.`,
  ];
}
