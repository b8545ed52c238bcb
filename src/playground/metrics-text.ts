/**
 * Reads the Prometheus text format that /metrics serves into samples, and
 * derives what the live panel shows: running and waiting requests and KV bytes
 * (sums of gauges), tokens/s (the rate of the generated-tokens counter between
 * two scrapes) and, per policy, mean latency, mean TTFT and shadow fidelity
 * (histogram and summary _sum / _count).
 */

export interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

const LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

export function parseMetrics(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = LINE.exec(line);
    if (m === null) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(LABEL)) labels[l[1] ?? ''] = (l[2] ?? '').replace(/\\(.)/g, (_all, c: string) => (c === 'n' ? '\n' : c));
    const value = Number(m[3]);
    if (!Number.isNaN(value)) samples.push({ name: m[1] ?? '', labels, value });
  }
  return samples;
}

function sum(samples: readonly Sample[], name: string): number {
  let total = 0;
  for (const s of samples) if (s.name === name) total += s.value;
  return total;
}

/** By policy label: sum of `${base}_sum` / sum of `${base}_count`, null where nothing was observed. */
function meanByPolicy(samples: readonly Sample[], base: string): Map<string, number | null> {
  const sums = new Map<string, number>();
  const counts = new Map<string, number>();
  for (const s of samples) {
    const policy = s.labels['policy'];
    if (policy === undefined) continue;
    if (s.name === `${base}_sum`) sums.set(policy, (sums.get(policy) ?? 0) + s.value);
    else if (s.name === `${base}_count`) counts.set(policy, (counts.get(policy) ?? 0) + s.value);
  }
  const out = new Map<string, number | null>();
  for (const [policy, count] of counts) out.set(policy, count > 0 ? (sums.get(policy) ?? 0) / count : null);
  return out;
}

export interface PolicyFigures {
  readonly requests: number;
  readonly meanLatencyS: number | null;
  readonly meanTtftS: number | null;
  readonly shadowKl: number | null;
  readonly shadowTop1: number | null;
}

export interface Snapshot {
  readonly at: number;
  readonly running: number;
  readonly waiting: number;
  readonly kvBytes: number;
  readonly generatedTokens: number;
  readonly policies: ReadonlyMap<string, PolicyFigures>;
}

export function snapshot(samples: readonly Sample[], at: number): Snapshot {
  const latency = meanByPolicy(samples, 'capserve_e2e_request_latency_seconds');
  const ttft = meanByPolicy(samples, 'capserve_time_to_first_token_seconds');
  const kl = meanByPolicy(samples, 'capserve_shadow_kl_divergence');
  const top1 = meanByPolicy(samples, 'capserve_shadow_top1_agreement');
  const requests = new Map<string, number>();
  for (const s of samples) {
    const policy = s.labels['policy'];
    if (s.name === 'capserve_e2e_request_latency_seconds_count' && policy !== undefined) requests.set(policy, (requests.get(policy) ?? 0) + s.value);
  }
  const policies = new Map<string, PolicyFigures>();
  for (const name of new Set([...latency.keys(), ...kl.keys()])) {
    policies.set(name, {
      requests: requests.get(name) ?? 0,
      meanLatencyS: latency.get(name) ?? null,
      meanTtftS: ttft.get(name) ?? null,
      shadowKl: kl.get(name) ?? null,
      shadowTop1: top1.get(name) ?? null,
    });
  }
  return {
    at,
    running: sum(samples, 'capserve_num_requests_running'),
    waiting: sum(samples, 'capserve_num_requests_waiting'),
    kvBytes: sum(samples, 'capserve_kv_cache_bytes'),
    generatedTokens: sum(samples, 'capserve_generation_tokens_total'),
    policies,
  };
}

/** Generated tokens per second between two scrapes (0 for the first). */
export function tokenRate(previous: Snapshot | null, current: Snapshot): number {
  if (previous === null || current.at <= previous.at) return 0;
  return Math.max(0, ((current.generatedTokens - previous.generatedTokens) * 1000) / (current.at - previous.at));
}
