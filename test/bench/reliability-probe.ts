/**
 * The reliability probe of issue 12, reproducible: runs `capserve serve` as a
 * child process (the real CLI, worker thread, HTTP and SSE) on a small real
 * model and measures, in one run:
 *
 *   burst       N streaming chat completions at once: how many completed, how
 *               many got 429 with Retry-After, none lost (reset, no [DONE],
 *               other status) or hung (no end within the deadline).
 *   disconnect  N streams closed by the client after their first tokens:
 *               time from the last close until the KV bytes in use
 *               (capserve_kv_cache_bytes on /metrics) are back to baseline.
 *   soak        N mixed requests (completions, chat, streaming, tokenize,
 *               detokenize, bad requests) at a fixed concurrency: the server's
 *               RSS at start, middle and end; no 5xx.
 *   drain       SIGTERM while streams are in flight: every stream finishes
 *               ([DONE]) or ends with an error event then [DONE]; exit code and
 *               time from the signal to exit.
 *
 * Not part of `npm test`. Usage (after `npm run build`):
 *   node dist/test/bench/reliability-probe.js [--model DIR] [--burst 300] [--disconnects 200]
 *     [--soak 6000] [--concurrency 8] [--drain-streams 16] [--json FILE]
 * Prints the machine and its load average beside the figures; one JSON line at the end.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { Agent, request, type IncomingMessage } from 'node:http';
import { loadavg } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { machineInfo } from './machine.js';
import { distribution, type Distribution } from './stats.js';

const { values: opts } = parseArgs({
  options: {
    model: { type: 'string' },
    burst: { type: 'string', default: '300' },
    disconnects: { type: 'string', default: '200' },
    soak: { type: 'string', default: '6000' },
    concurrency: { type: 'string', default: '8' },
    'drain-streams': { type: 'string', default: '16' },
    json: { type: 'string' },
  },
});
const shared = process.env['CAPSERVE_SHARED'] ?? path.resolve(process.cwd(), '../shared');
const MODEL_DIR = path.resolve(opts.model ?? path.join(shared, 'models', 'stories260K'));
const MODEL = path.basename(MODEL_DIR);
const int = (s: string | undefined, name: string): number => {
  const n = Number(s);
  if (!Number.isInteger(n) || n < 0) throw new Error(`--${name} expects a non-negative integer, got ${s}`);
  return n;
};
const BURST = int(opts.burst, 'burst');
const DISCONNECTS = int(opts.disconnects, 'disconnects');
const SOAK = int(opts.soak, 'soak');
const CONCURRENCY = Math.max(1, int(opts.concurrency, 'concurrency'));
const DRAIN_STREAMS = int(opts['drain-streams'], 'drain-streams');
/** A stream with no end by then counts as hung. */
const HANG_MS = 180_000;

// ---------------------------------------------------------------- the server

interface Server {
  readonly child: ChildProcess;
  readonly port: number;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>;
  readonly stderr: () => string;
  /** When the server logged "stopped" (drain done), NaN before. */
  readonly stoppedAt: () => number;
}

async function startServer(): Promise<Server> {
  const cli = path.resolve(process.cwd(), 'dist/src/cli.js');
  const args = [cli, 'serve', '--model', MODEL_DIR, '--port', '0', '--set', 'model.chatTemplateFallback=chatml', '--set', 'engine.threads=1'];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, CAPSERVE_LOG_LEVEL: 'info' } });
  // Ours to stop: a probe that fails must not leave a server behind.
  process.once('exit', () => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  let stderr = '';
  let out = '';
  const lines: Record<string, unknown>[] = [];
  child.stderr?.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  let listening = false;
  let stoppedAt = NaN;
  child.stdout?.setEncoding('utf8').on('data', (c: string) => {
    // Request logs are read (the pipe must not fill) but only parsed until the listen line.
    if (listening) {
      if (c.includes('"msg":"stopped"')) stoppedAt = performance.now();
      return;
    }
    out += c;
    const parts = out.split('\n');
    out = parts.pop() ?? '';
    for (const l of parts) {
      try {
        lines.push(JSON.parse(l) as Record<string, unknown>);
      } catch {
        // not a log line
      }
    }
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal, at: performance.now() })),
  );
  const port = await new Promise<number>((resolve, reject) => {
    const deadline = setTimeout(() => reject(new Error(`no listening port within 30 s; stderr: ${stderr}`)), 30_000);
    const timer = setInterval(() => {
      const line = lines.find((l) => typeof l['msg'] === 'string' && /^Server listening at http:\/\/127\.0\.0\.1:\d+$/.test(l['msg']));
      if (line !== undefined) {
        listening = true;
        clearInterval(timer);
        clearTimeout(deadline);
        resolve(Number(/:(\d+)$/.exec(String(line['msg']))?.[1]));
      } else if (child.exitCode !== null) {
        clearInterval(timer);
        clearTimeout(deadline);
        reject(new Error(`capserve exited (${child.exitCode}): ${stderr}`));
      }
    }, 20);
  });
  const end = Date.now() + 120_000;
  for (;;) {
    const status = await get(port, '/health').then(
      (r) => r.status,
      () => 0,
    );
    if (status === 200) break;
    if (Date.now() > end) throw new Error(`not healthy after 120 s; stderr: ${stderr}`);
    await sleep(100);
  }
  return { child, port, exited, stderr: () => stderr, stoppedAt: () => stoppedAt };
}

// ---------------------------------------------------------------- HTTP

const agent = new Agent({ keepAlive: true, maxSockets: Infinity });
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface Reply {
  readonly status: number;
  readonly headers: IncomingMessage['headers'];
  readonly body: string;
}

function send(port: number, method: string, urlPath: string, body?: string): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        method,
        path: urlPath,
        agent,
        headers: body !== undefined ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } : {},
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }));
        res.on('error', reject);
      },
    );
    req.setTimeout(HANG_MS, () => req.destroy(new Error('hung')));
    req.on('error', reject);
    req.end(body);
  });
}
const get = (port: number, urlPath: string): Promise<Reply> => send(port, 'GET', urlPath);
const post = (port: number, urlPath: string, body: unknown): Promise<Reply> =>
  send(port, 'POST', urlPath, typeof body === 'string' ? body : JSON.stringify(body));

/** refused: a non-200 answer (its JSON error code is kept); no_done: a 200 stream that ended without [DONE]. */
type StreamEnd = 'done' | 'error_then_done' | 'refused' | 'no_done' | 'reset' | 'hung' | 'closed_by_client';

interface StreamResult {
  readonly status: number;
  readonly retryAfter: string | undefined;
  readonly end: StreamEnd;
  readonly errorCode: string | null;
  readonly chunks: number;
}

/**
 * One SSE request. `closeAfter`: the client closes the connection after this many
 * data events (a mid-stream disconnect); `onFirst` runs at the first data event.
 */
function stream(
  port: number,
  urlPath: string,
  body: unknown,
  options: { closeAfter?: number; onClose?: () => void; onFirst?: () => void } = {},
): Promise<StreamResult> {
  return new Promise((resolve) => {
    const payload = JSON.stringify(body);
    let settled = false;
    const finish = (r: StreamResult): void => {
      if (!settled) {
        settled = true;
        resolve(r);
      }
    };
    const req = request(
      {
        host: '127.0.0.1',
        port,
        method: 'POST',
        path: urlPath,
        agent: false,
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) },
      },
      (res) => {
        const status = res.statusCode ?? 0;
        const retryAfter = typeof res.headers['retry-after'] === 'string' ? res.headers['retry-after'] : undefined;
        let buf = '';
        let chunks = 0;
        let errorCode: string | null = null;
        let done = false;
        res.setEncoding('utf8');
        res.on('data', (c: string) => {
          buf += c;
          let at: number;
          while ((at = buf.indexOf('\n\n')) >= 0) {
            const event = buf.slice(0, at);
            buf = buf.slice(at + 2);
            for (const line of event.split('\n')) {
              if (!line.startsWith('data: ')) continue;
              const data = line.slice(6);
              if (data === '[DONE]') {
                done = true;
                continue;
              }
              chunks++;
              if (chunks === 1) options.onFirst?.();
              // An error event is {"error": {...}} at the top level (a chunk's cap may say "mode":"error").
              if (data.startsWith('{"error"')) {
                try {
                  errorCode = String((JSON.parse(data) as { error?: { code?: unknown } }).error?.code ?? 'unknown');
                } catch {
                  errorCode = 'unparsable';
                }
              }
            }
          }
          if (options.closeAfter !== undefined && chunks >= options.closeAfter && !done) {
            req.destroy();
            options.onClose?.();
            finish({ status, retryAfter, end: 'closed_by_client', errorCode, chunks });
          }
        });
        res.on('end', () => {
          if (status !== 200) {
            try {
              errorCode = String((JSON.parse(buf) as { error?: { code?: unknown } }).error?.code ?? null);
            } catch {
              errorCode = null;
            }
          }
          const end: StreamEnd = status !== 200 ? 'refused' : !done ? 'no_done' : errorCode !== null ? 'error_then_done' : 'done';
          finish({ status, retryAfter, end, errorCode, chunks });
        });
        res.on('error', () => finish({ status, retryAfter, end: 'reset', errorCode, chunks }));
        res.on('aborted', () => finish({ status, retryAfter, end: 'reset', errorCode, chunks }));
      },
    );
    req.setTimeout(HANG_MS, () => {
      finish({ status: 0, retryAfter: undefined, end: 'hung', errorCode: null, chunks: 0 });
      req.destroy();
    });
    req.on('error', () => finish({ status: 0, retryAfter: undefined, end: 'reset', errorCode: null, chunks: 0 }));
    req.end(payload);
  });
}

async function metric(port: number, name: string): Promise<number> {
  const text = (await get(port, '/metrics')).body;
  const line = text.split('\n').find((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `));
  return line === undefined ? NaN : Number(line.slice(line.lastIndexOf(' ') + 1));
}

/** The server process's resident set (Linux /proc), in MiB. */
function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m === null ? NaN : Math.round((Number(m[1]) / 1024) * 10) / 10;
}

const tally = <T extends string>(xs: readonly T[]): Record<string, number> => {
  const out: Record<string, number> = {};
  for (const x of xs) out[x] = (out[x] ?? 0) + 1;
  return out;
};
const round = (d: Distribution): Record<string, number> => Object.fromEntries(Object.entries(d).map(([k, v]) => [k, Math.round(v * 10) / 10]));

// ---------------------------------------------------------------- phases

const CHAT = (i: number, extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  model: MODEL,
  messages: [{ role: 'user', content: `Tell me story number ${i} about a cat.` }],
  max_tokens: 32,
  temperature: 0.8,
  seed: i,
  ...extra,
});
const COMPLETION = (i: number, extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  model: MODEL,
  prompt: `Once upon a time, story ${i}, there was`,
  max_tokens: 16,
  temperature: 0.8,
  seed: i,
  ...extra,
});

async function burst(port: number): Promise<Record<string, unknown>> {
  const t0 = performance.now();
  const results = await Promise.all(Array.from({ length: BURST }, (_, i) => stream(port, '/v1/chat/completions', CHAT(i, { stream: true }))));
  const wallMs = performance.now() - t0;
  const completed = results.filter((r) => r.status === 200 && r.end === 'done' && r.errorCode === null).length;
  const rejected = results.filter((r) => r.status === 429);
  const withRetryAfter = rejected.filter((r) => r.retryAfter !== undefined && Number(r.retryAfter) > 0).length;
  const lost = results.filter((r) => !(r.status === 200 && r.end === 'done' && r.errorCode === null) && r.status !== 429 && r.end !== 'hung');
  const hung = results.filter((r) => r.end === 'hung').length;
  return {
    streams: BURST,
    completed,
    rejected429: rejected.length,
    rejectedWithRetryAfter: withRetryAfter,
    retryAfterValues: tally(rejected.map((r) => String(r.retryAfter))),
    lost: lost.length,
    lostDetail: tally(lost.map((r) => `${r.status}:${r.end}:${r.errorCode ?? ''}`)),
    hung,
    wallMs: Math.round(wallMs),
  };
}

async function disconnects(port: number): Promise<Record<string, unknown>> {
  const baseline = await metric(port, 'capserve_kv_cache_bytes');
  let peak = baseline;
  let lastClose = 0;
  let started = 0;
  const results: StreamResult[] = [];
  // Up to CONCURRENCY streams at a time (all admitted, none queued behind streams that never end on their own).
  const client = async (): Promise<void> => {
    while (started < DISCONNECTS) {
      started++;
      const r = await stream(port, '/v1/completions', COMPLETION(started, { max_tokens: 400, ignore_eos: true, stream: true }), {
        closeAfter: 3,
        onClose: () => (lastClose = performance.now()),
      });
      results.push(r);
    }
  };
  const sampler = (async () => {
    while (results.length < DISCONNECTS) {
      peak = Math.max(peak, await metric(port, 'capserve_kv_cache_bytes'));
      await sleep(50);
    }
  })();
  await Promise.all([...Array.from({ length: CONCURRENCY }, client), sampler]);
  // From the last client close until a /metrics answer shows the baseline again: the
  // release happened between that scrape's request and its answer (both reported).
  let polls = 0;
  let sentAt = performance.now();
  let kv = await metric(port, 'capserve_kv_cache_bytes');
  while (kv !== baseline && performance.now() - lastClose < 30_000) {
    polls++;
    await sleep(5);
    sentAt = performance.now();
    kv = await metric(port, 'capserve_kv_cache_bytes');
  }
  const backMs = performance.now() - lastClose;
  const running = await metric(port, 'capserve_num_requests_running');
  return {
    streams: DISCONNECTS,
    closedByClient: results.filter((r) => r.end === 'closed_by_client').length,
    other: tally(results.filter((r) => r.end !== 'closed_by_client').map((r) => `${r.status}:${r.end}:${r.errorCode ?? ''}`)),
    kvBaselineBytes: baseline,
    kvPeakBytes: peak,
    kvAfterBytes: kv,
    backToBaselineMs: kv === baseline ? Math.round(backMs * 10) / 10 : null,
    baselineScrapeSentMs: Math.round((sentAt - lastClose) * 10) / 10,
    polls,
    runningAfter: running,
  };
}

type SoakKind =
  | 'completion'
  | 'chat'
  | 'stream-completion'
  | 'stream-chat'
  | 'tokenize'
  | 'detokenize'
  | 'bad-json'
  | 'bad-param'
  | 'bad-model'
  | 'too-long'
  | 'unknown-route';

/** What each request kind must answer (status class). */
const SOAK_PLAN: readonly { kind: SoakKind; weight: number; expect: number }[] = [
  { kind: 'completion', weight: 20, expect: 200 },
  { kind: 'chat', weight: 15, expect: 200 },
  { kind: 'stream-completion', weight: 15, expect: 200 },
  { kind: 'stream-chat', weight: 15, expect: 200 },
  { kind: 'tokenize', weight: 10, expect: 200 },
  { kind: 'detokenize', weight: 5, expect: 200 },
  { kind: 'bad-json', weight: 5, expect: 400 },
  { kind: 'bad-param', weight: 5, expect: 400 },
  { kind: 'bad-model', weight: 4, expect: 404 },
  { kind: 'too-long', weight: 4, expect: 400 },
  { kind: 'unknown-route', weight: 2, expect: 404 },
];

/** A seeded xorshift, so every run sends the same sequence. */
function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 2 ** 32;
  };
}

async function soakOne(port: number, kind: SoakKind, i: number): Promise<{ status: number; ok: boolean }> {
  switch (kind) {
    case 'completion':
      return { status: (await post(port, '/v1/completions', COMPLETION(i))).status, ok: true };
    case 'chat':
      return { status: (await post(port, '/v1/chat/completions', CHAT(i, { max_tokens: 16 }))).status, ok: true };
    case 'stream-completion': {
      const r = await stream(port, '/v1/completions', COMPLETION(i, { stream: true }));
      return { status: r.status, ok: r.end === 'done' && r.errorCode === null };
    }
    case 'stream-chat': {
      const r = await stream(port, '/v1/chat/completions', CHAT(i, { max_tokens: 16, stream: true, stream_options: { include_usage: true } }));
      return { status: r.status, ok: r.end === 'done' && r.errorCode === null };
    }
    case 'tokenize':
      return {
        status: (await post(port, '/tokenize', { model: MODEL, prompt: `The little dog ran ${i} times around the park. `.repeat(1 + (i % 40)) })).status,
        ok: true,
      };
    case 'detokenize':
      return {
        status: (await post(port, '/detokenize', { model: MODEL, tokens: Array.from({ length: 1 + (i % 2000) }, (_, k) => 3 + ((k * 31 + i) % 500)) })).status,
        ok: true,
      };
    case 'bad-json':
      return { status: (await post(port, '/v1/completions', '{"model": "x", "prompt": ')).status, ok: true };
    case 'bad-param':
      return { status: (await post(port, '/v1/chat/completions', CHAT(i, { temperature: 'hot', max_tokens: -1 }))).status, ok: true };
    case 'bad-model':
      return { status: (await post(port, '/v1/completions', COMPLETION(i, { model: 'no-such-model' }))).status, ok: true };
    case 'too-long':
      return { status: (await post(port, '/v1/completions', COMPLETION(i, { prompt: 'word '.repeat(4000) }))).status, ok: true };
    case 'unknown-route':
      return { status: (await get(port, `/v1/nothing-${i % 7}`)).status, ok: true };
  }
}

async function soak(server: Server): Promise<Record<string, unknown>> {
  const pid = server.child.pid as number;
  const random = rng(12);
  const total = SOAK_PLAN.reduce((s, p) => s + p.weight, 0);
  const kinds: SoakKind[] = Array.from({ length: SOAK }, () => {
    let x = random() * total;
    for (const p of SOAK_PLAN) if ((x -= p.weight) < 0) return p.kind;
    return 'completion';
  });
  const expect = new Map(SOAK_PLAN.map((p) => [p.kind, p.expect]));
  const rss: { done: number; rssMiB: number }[] = [{ done: 0, rssMiB: rssMiB(pid) }];
  const every = Math.max(1, Math.floor(SOAK / 10));
  const unexpected: string[] = [];
  const latencies: number[] = [];
  let next = 0;
  let finished = 0;
  let fivexx = 0;
  const t0 = performance.now();
  const client = async (): Promise<void> => {
    while (next < kinds.length) {
      const i = next++;
      const kind = kinds[i] as SoakKind;
      const t = performance.now();
      let r: { status: number; ok: boolean };
      try {
        r = await soakOne(server.port, kind, i);
      } catch (err) {
        r = { status: 0, ok: false };
        unexpected.push(`${kind}: ${err instanceof Error ? err.message : String(err)}`);
      }
      latencies.push(performance.now() - t);
      if (r.status >= 500) fivexx++;
      // 429 is an honest answer under load for generation; anything else off-plan is a finding.
      if (r.status !== 0 && (r.status !== expect.get(kind) || !r.ok) && r.status !== 429)
        unexpected.push(`${kind}: ${r.status}${r.ok ? '' : ' (stream did not end with [DONE])'}`);
      finished++;
      if (finished % every === 0) rss.push({ done: finished, rssMiB: rssMiB(pid) });
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, client));
  const wallMs = performance.now() - t0;
  await sleep(2_000);
  rss.push({ done: finished, rssMiB: rssMiB(pid) });
  const health = await get(server.port, '/health');
  const middle = rss.find((r) => r.done >= SOAK / 2) ?? rss[rss.length - 1];
  return {
    requests: SOAK,
    concurrency: CONCURRENCY,
    mix: tally(kinds),
    fivexx,
    unexpected: tally(unexpected),
    latencyMs: round(distribution(latencies)),
    wallMs: Math.round(wallMs),
    rssMiB: { start: rss[0]?.rssMiB, middle: middle?.rssMiB, end: rss[rss.length - 2]?.rssMiB, after2s: rss[rss.length - 1]?.rssMiB },
    rssSeries: rss,
    healthAfter: health.status,
    kvBytesAfter: await metric(server.port, 'capserve_kv_cache_bytes'),
  };
}

async function drain(server: Server): Promise<Record<string, unknown>> {
  let firsts = 0;
  const streams = Array.from({ length: DRAIN_STREAMS }, (_, i) =>
    stream(server.port, '/v1/completions', COMPLETION(i, { max_tokens: 200, ignore_eos: true, stream: true }), { onFirst: () => firsts++ }),
  );
  // Signal once the admitted streams are producing (the rest are queued: in flight too).
  const admitted = Math.min(DRAIN_STREAMS, CONCURRENCY);
  const until = Date.now() + 60_000;
  while (firsts < admitted && Date.now() < until) await sleep(5);
  const signalled = performance.now();
  const producingAtSignal = firsts;
  server.child.kill('SIGTERM');
  const results = await Promise.all(streams);
  const lastStreamEnd = performance.now();
  const exit = await server.exited;
  const refusedAfter = await post(server.port, '/v1/completions', COMPLETION(0)).then(
    (r) => `status ${r.status}`,
    (err: unknown) => (err instanceof Error && 'code' in err ? String(err.code) : String(err)),
  );
  return {
    streams: DRAIN_STREAMS,
    producingAtSignal,
    outcomes: tally(results.map((r) => `${r.status}:${r.end}${r.errorCode !== null ? `:${r.errorCode}` : ''}`)),
    lostOrHung: results.filter((r) => r.end === 'reset' || r.end === 'hung' || r.end === 'no_done').length,
    exitCode: exit.code,
    exitSignal: exit.signal,
    streamsEndedMs: Math.round(lastStreamEnd - signalled),
    stoppedLogMs: Math.round(server.stoppedAt() - signalled),
    exitMs: Math.round(exit.at - signalled),
    afterExit: refusedAfter,
    stderr: server
      .stderr()
      .trim()
      .split('\n')
      .filter((l) => l !== '')
      .slice(-3),
  };
}

async function main(): Promise<void> {
  const machine = { ...machineInfo(), loadavgAtStart: loadavg().map((x) => Math.round(x * 100) / 100) };
  console.log(`machine: ${JSON.stringify(machine)}`);
  console.log(`model: ${MODEL_DIR}; server: capserve serve, engine.threads=1, default server.maxConcurrent/maxQueue/shutdownGraceMs`);
  const startedAt = performance.now();
  const server = await startServer();
  console.log(`server pid ${server.child.pid} on port ${server.port}, healthy after ${Math.round(performance.now() - startedAt)} ms`);
  // Warm up (first requests compile graph variants, JIT) before measuring.
  for (let i = 0; i < 8; i++) await post(server.port, '/v1/completions', COMPLETION(i));
  await stream(server.port, '/v1/chat/completions', CHAT(0, { stream: true }));

  const report: Record<string, unknown> = { machine, model: MODEL };
  const phase = async (name: string, run: () => Promise<Record<string, unknown>>): Promise<void> => {
    const t = performance.now();
    const r = await run();
    report[name] = { ...r, loadavg1m: Math.round((loadavg()[0] ?? 0) * 100) / 100 };
    console.log(`${name} (${Math.round((performance.now() - t) / 1000)} s): ${JSON.stringify(report[name])}`);
  };
  if (BURST > 0) await phase('burst', () => burst(server.port));
  if (DISCONNECTS > 0) await phase('disconnect', () => disconnects(server.port));
  if (SOAK > 0) await phase('soak', () => soak(server));
  await phase('drain', () => drain(server));
  report['loadavgAtEnd'] = loadavg().map((x) => Math.round(x * 100) / 100);
  const line = JSON.stringify(report);
  console.log(line);
  if (opts.json !== undefined) writeFileSync(opts.json, `${line}\n`);
  agent.destroy();
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? (err.stack ?? err.message) : String(err));
  process.exit(1);
});
