/**
 * The serving load run, in its own process: starts the real server on a port
 * (the worker, the scheduler, HTTP and SSE all included), then in the same run
 * one streaming client (batch-1 baseline) and N concurrent streaming clients.
 * Reports aggregate generated tokens/s, time to first token and inter-token
 * latency distributions. Prints one JSON line.
 */
import { spawn } from 'node:child_process';
import { parseArgs } from 'node:util';
import { distribution, type Distribution } from './stats.js';

export interface LoadRun {
  readonly clients: number;
  readonly tokensPerSecond: number;
  readonly ttftMs: Distribution;
  readonly itlMs: Distribution;
  readonly completionTokens: number;
  readonly wallMs: number;
}

export interface LoadResult {
  readonly model: string;
  readonly maxTokens: number;
  readonly baseline: LoadRun;
  readonly loaded: LoadRun;
}

async function waitHealthy(base: string, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    try {
      const r = await fetch(`${base}/health`);
      if (r.status === 200) return;
    } catch {
      // not listening yet
    }
    await new Promise((res) => setTimeout(res, 250));
  }
  throw new Error(`server at ${base} not healthy after ${timeoutMs} ms`);
}

interface ClientStats {
  ttft: number;
  itl: number[];
  tokens: number;
}

async function streamOne(base: string, model: string, prompt: string, maxTokens: number): Promise<ClientStats> {
  const t0 = performance.now();
  const res = await fetch(`${base}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model, prompt, max_tokens: maxTokens, stream: true, temperature: 0, ignore_eos: true }),
  });
  if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}: ${await res.text()}`);
  const decoder = new TextDecoder();
  let buf = '';
  let last = 0;
  const stats: ClientStats = { ttft: -1, itl: [], tokens: 0 };
  for await (const chunk of res.body) {
    buf += decoder.decode(chunk as Uint8Array, { stream: true });
    let idx: number;
    while ((idx = buf.indexOf('\n\n')) >= 0) {
      const event = buf.slice(0, idx);
      buf = buf.slice(idx + 2);
      if (!event.startsWith('data: ') || event === 'data: [DONE]') continue;
      const parsed = JSON.parse(event.slice(6)) as { choices?: { text?: string }[] };
      if (!parsed.choices || parsed.choices.length === 0) continue;
      const now = performance.now();
      if (stats.ttft < 0) stats.ttft = now - t0;
      else stats.itl.push(now - last);
      last = now;
      stats.tokens += 1;
    }
  }
  return stats;
}

async function runClients(base: string, model: string, clients: number, maxTokens: number): Promise<LoadRun> {
  const t0 = performance.now();
  const all = await Promise.all(Array.from({ length: clients }, (_, i) => streamOne(base, model, `Once upon a time, client ${i} said`, maxTokens)));
  const wallMs = performance.now() - t0;
  // Chunks, not tokens, are what SSE delivers; completion tokens come from max_tokens with ignore_eos.
  const completionTokens = clients * maxTokens;
  return {
    clients,
    tokensPerSecond: (completionTokens * 1000) / wallMs,
    ttftMs: distribution(all.map((s) => s.ttft)),
    itlMs: distribution(all.flatMap((s) => s.itl)),
    completionTokens,
    wallMs,
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      model: { type: 'string' },
      clients: { type: 'string', default: '64' },
      'max-tokens': { type: 'string', default: '64' },
      port: { type: 'string', default: '18431' },
      threads: { type: 'string', default: '2' },
      /** Extra config overrides for the server (`--set key=value`, repeatable). */
      set: { type: 'string', multiple: true, default: [] },
    },
  });
  if (!values.model) throw new Error('--model is required');
  const port = values.port;
  const clients = Number(values.clients);
  const maxTokens = Number(values['max-tokens']);
  const server = spawn(
    process.execPath,
    [
      'dist/src/cli.js',
      'serve',
      '--model',
      values.model,
      '--port',
      port,
      '--served-model-name',
      'bench',
      '--set',
      `server.maxConcurrent=${clients}`,
      '--set',
      'server.maxQueue=1024',
      '--set',
      `engine.threads=${values.threads}`,
      '--set',
      'memory.kvBudgetBytes=8589934592',
      '--set',
      'shadow.sampleRate=0',
      ...values.set.flatMap((kv) => ['--set', kv]),
    ],
    { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, CAPSERVE_LOG_LEVEL: 'warn' } },
  );
  const base = `http://127.0.0.1:${port}`;
  try {
    await waitHealthy(base, 600_000);
    await runClients(base, 'bench', 1, 8); // warm-up
    const baseline = await runClients(base, 'bench', 1, maxTokens);
    const loaded = await runClients(base, 'bench', clients, maxTokens);
    const result: LoadResult = { model: values.model, maxTokens, baseline, loaded };
    process.stdout.write(`${JSON.stringify(result)}\n`);
  } finally {
    server.kill('SIGTERM');
    await new Promise<void>((res) => server.once('exit', () => res()));
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`load-bench: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
