/**
 * Scale-out throughput, in its own process: the same bounded load (C
 * concurrent streaming chat clients, N requests of T tokens each, one
 * conversation per client) through nginx running deploy/nginx/capserve.conf
 * in front of one replica, then in front of R replicas, alternating for
 * `--rounds` rounds in the same run. Reports per configuration the median
 * generated tokens/s and the request latency distribution, and the ratio R
 * replicas : one. Every replica runs `engine.threads=1`, so the ratio says how
 * far the work spreads over the machine's cores. Prints the machine and one
 * JSON line.
 *
 *   node dist/test/bench/scale-out-bench.js [--model DIR] [--replicas 3] [--clients 32] [--requests 160] [--max-tokens 24] [--rounds 3]
 */
import { parseArgs } from 'node:util';
import { nginxBinary, runLoad, startNginx, startReplica, type Replica } from '../helpers/replicas.js';
import { storiesModelDir } from '../integration/server-harness.js';
import { machineInfo } from './machine.js';
import { distribution, median, type Distribution } from './stats.js';

interface Run {
  readonly tokensPerSecond: number;
  readonly latencyMs: Distribution;
  readonly failedAttempts: number;
  readonly lost: number;
}

export interface ScaleOutResult {
  readonly machine: ReturnType<typeof machineInfo>;
  readonly replicas: number;
  readonly clients: number;
  readonly requests: number;
  readonly maxTokens: number;
  readonly one: { readonly runs: readonly Run[]; readonly medianTokensPerSecond: number };
  readonly many: { readonly runs: readonly Run[]; readonly medianTokensPerSecond: number };
  readonly ratio: number;
}

const { values } = parseArgs({
  options: {
    model: { type: 'string' },
    replicas: { type: 'string', default: '3' },
    clients: { type: 'string', default: '32' },
    requests: { type: 'string', default: '160' },
    'max-tokens': { type: 'string', default: '24' },
    rounds: { type: 'string', default: '3' },
  },
});

async function measure(port: number, clients: number, requests: number, maxTokens: number): Promise<Run> {
  const body = { messages: [{ role: 'user', content: 'Once upon a time' }], max_tokens: maxTokens, ignore_eos: true, temperature: 0 };
  const { outcomes, seconds } = await runLoad(port, { clients, total: requests, body });
  const tokens = outcomes.reduce((n, o) => n + (o.attempts.at(-1)?.completionTokens ?? 0), 0);
  const last = outcomes.map((o) => o.attempts.at(-1)).filter((a) => a !== undefined);
  return {
    tokensPerSecond: tokens / seconds,
    latencyMs: distribution(last.map((a) => a.endedAt - a.startedAt)),
    failedAttempts: outcomes.reduce((n, o) => n + o.attempts.filter((a) => !a.complete).length, 0),
    lost: outcomes.filter((o) => !o.ok).length,
  };
}

async function main(): Promise<void> {
  const model = values.model ?? storiesModelDir();
  const nginx = nginxBinary();
  if (model === null || nginx === null) throw new Error(model === null ? 'no model: pass --model or set CAPSERVE_SHARED' : 'nginx not found');
  const count = Number(values.replicas);
  const clients = Number(values.clients);
  const requests = Number(values.requests);
  const maxTokens = Number(values['max-tokens']);
  const rounds = Number(values.rounds);
  const replicas: Replica[] = await Promise.all(Array.from({ length: count }, () => startReplica(model)));
  const single = await startNginx(nginx, [replicas[0]?.port ?? 0]);
  const all = await startNginx(
    nginx,
    replicas.map((r) => r.port),
  );
  const one: Run[] = [];
  const many: Run[] = [];
  try {
    // Warm-up: every replica's graphs and sessions touched once.
    await measure(all.port, clients, clients, 4);
    for (let i = 0; i < rounds; i++) {
      one.push(await measure(single.port, clients, requests, maxTokens));
      many.push(await measure(all.port, clients, requests, maxTokens));
      process.stderr.write(
        `round ${i + 1}: one ${one.at(-1)?.tokensPerSecond.toFixed(0)} tok/s, ${count} replicas ${many.at(-1)?.tokensPerSecond.toFixed(0)} tok/s\n`,
      );
    }
  } finally {
    await single.stop();
    await all.stop();
    for (const r of replicas) r.child.kill('SIGKILL');
  }
  const oneMedian = median(one.map((r) => r.tokensPerSecond));
  const manyMedian = median(many.map((r) => r.tokensPerSecond));
  const result: ScaleOutResult = {
    machine: machineInfo(),
    replicas: count,
    clients,
    requests,
    maxTokens,
    one: { runs: one, medianTokensPerSecond: oneMedian },
    many: { runs: many, medianTokensPerSecond: manyMedian },
    ratio: manyMedian / oneMedian,
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
