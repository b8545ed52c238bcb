/**
 * Several `capserve serve` processes behind a real nginx (Debian's package),
 * for the scale-out test and bench: start a replica as a child process on a
 * free loopback port (ready once /health is 200), start nginx on the shipped
 * deploy/nginx/capserve.conf with only its upstream servers and listen port
 * replaced, and a streaming chat client that retries on 502/503 and on a
 * stream cut before its end, recording every attempt.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';

export const CLI = path.resolve(process.cwd(), 'dist/src/cli.js');
export const NGINX_CONF = path.resolve(process.cwd(), 'deploy/nginx/capserve.conf');

/** The nginx binary (CAPSERVE_NGINX, else Debian's /usr/sbin/nginx), or null. */
export function nginxBinary(): string | null {
  const candidates = [process.env['CAPSERVE_NGINX'], '/usr/sbin/nginx', '/usr/bin/nginx'];
  return candidates.find((p): p is string => p !== undefined && p !== '' && existsSync(p)) ?? null;
}

export interface Replica {
  readonly child: ChildProcess;
  readonly port: number;
  /** Its JSON log lines so far. */
  readonly logs: () => Record<string, unknown>[];
  readonly exited: Promise<number | null>;
  readonly stderr: () => string;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** `capserve serve --model DIR --port 0` as a child; resolves when it listens and /health is 200 (503 before: an error otherwise). */
export async function startReplica(modelDir: string, sets: readonly string[] = [], timeoutMs = 60_000): Promise<Replica> {
  const args = [
    CLI,
    'serve',
    '--model',
    modelDir,
    '--port',
    '0',
    '--set',
    'model.chatTemplateFallback=chatml',
    '--set',
    'engine.threads=1',
    ...sets.flatMap((s) => ['--set', s]),
  ];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, CAPSERVE_LOG_LEVEL: 'info' } });
  const lines: Record<string, unknown>[] = [];
  let stderr = '';
  let buffer = '';
  child.stdout?.setEncoding('utf8');
  child.stdout?.on('data', (chunk: string) => {
    buffer += chunk;
    const parts = buffer.split('\n');
    buffer = parts.pop() ?? '';
    for (const line of parts) if (line.trim() !== '') lines.push(JSON.parse(line) as Record<string, unknown>);
  });
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (chunk: string) => (stderr += chunk));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const deadline = Date.now() + timeoutMs;
  let port = 0;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`capserve exited early (${child.exitCode}): ${stderr}`);
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`capserve not ready within ${timeoutMs} ms; stderr: ${stderr}`);
    }
    if (port === 0) {
      const listening = lines.find((l) => typeof l['msg'] === 'string' && l['msg'].startsWith('Server listening at http://127.0.0.1:'));
      if (listening !== undefined) port = Number(/:(\d+)$/.exec(String(listening['msg']))?.[1]);
    } else {
      const status = await fetch(`http://127.0.0.1:${port}/health`).then(
        (r) => r.status,
        () => 0,
      );
      if (status === 200) break;
      // Listening but loading: /health is 503 until the model is ready, never anything else.
      if (status !== 503 && status !== 0) throw new Error(`GET /health answered ${status} while the model loads; stderr: ${stderr}`);
    }
    await sleep(50);
  }
  return { child, port, logs: () => lines, exited, stderr: () => stderr };
}

export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/**
 * The shipped config with its upstream servers replaced by these loopback ports and its listen port
 * by `listen`; `debugHeader` adds X-Capserve-Upstream (the replica that answered) to responses.
 */
export function renderNginxConf(shipped: string, upstreamPorts: readonly number[], listen: number, debugHeader: boolean): string {
  const servers = /^(\s*)server 127\.0\.0\.1:\d+( [^;]*)?;\n/m;
  const first = servers.exec(shipped);
  if (first === null) throw new Error('deploy/nginx/capserve.conf: no upstream server line to replace');
  const indent = first[1] ?? '    ';
  const options = first[2] ?? '';
  let conf = shipped.replace(new RegExp(servers.source, 'gm'), '');
  conf = conf.replace(/(\n\s*hash [^;]*;\n)/, `$1${upstreamPorts.map((p) => `${indent}server 127.0.0.1:${p}${options};\n`).join('')}`);
  if (!/\n\s*listen \d+;/.test(conf)) throw new Error('deploy/nginx/capserve.conf: no listen line to replace');
  conf = conf.replace(/(\n\s*)listen \d+;/, `$1listen 127.0.0.1:${listen};`);
  if (debugHeader)
    conf = conf.replace(/(\n\s*)proxy_pass http:\/\/capserve;/, '$1proxy_pass http://capserve;$1add_header X-Capserve-Upstream $upstream_addr always;');
  return conf;
}

export interface Nginx {
  readonly port: number;
  readonly child: ChildProcess;
  readonly errorLog: () => string;
  stop(): Promise<void>;
}

/** nginx in the foreground in a temporary prefix, serving the rendered shipped config; resolves once it accepts connections. */
export async function startNginx(binary: string, upstreamPorts: readonly number[]): Promise<Nginx> {
  const dir = mkdtempSync(path.join(tmpdir(), 'capserve-nginx-'));
  const port = await freePort();
  writeFileSync(path.join(dir, 'capserve.conf'), renderNginxConf(readFileSync(NGINX_CONF, 'utf8'), upstreamPorts, port, true));
  const asRoot = process.getuid?.() === 0;
  writeFileSync(
    path.join(dir, 'nginx.conf'),
    [
      // As root nginx would switch its workers to nobody, who cannot write this private prefix.
      ...(asRoot ? ['user root;'] : []),
      'daemon off;',
      'worker_processes 1;',
      `pid ${dir}/nginx.pid;`,
      `error_log ${dir}/error.log warn;`,
      'events { worker_connections 1024; }',
      'http {',
      '  access_log off;',
      `  client_body_temp_path ${dir}/body;`,
      `  proxy_temp_path ${dir}/proxy;`,
      `  fastcgi_temp_path ${dir}/fastcgi;`,
      `  uwsgi_temp_path ${dir}/uwsgi;`,
      `  scgi_temp_path ${dir}/scgi;`,
      `  include ${dir}/capserve.conf;`,
      '}',
      '',
    ].join('\n'),
  );
  const child = spawn(binary, ['-p', dir, '-c', path.join(dir, 'nginx.conf'), '-e', path.join(dir, 'error.log')], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (c: string) => (stderr += c));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const errorLog = (): string => {
    try {
      return readFileSync(path.join(dir, 'error.log'), 'utf8');
    } catch {
      return '';
    }
  };
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`nginx exited (${child.exitCode}): ${stderr}${errorLog()}`);
    const up = await fetch(`http://127.0.0.1:${port}/health`).then(
      () => true,
      () => false,
    );
    if (up) break;
    if (Date.now() > deadline) throw new Error(`nginx did not accept connections: ${stderr}${errorLog()}`);
    await sleep(50);
  }
  return {
    port,
    child,
    errorLog,
    async stop() {
      if (child.exitCode === null) child.kill('SIGQUIT');
      await Promise.race([exited, sleep(5_000)]);
      if (child.exitCode === null) child.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface Attempt {
  /** HTTP status, or 0 when the connection failed. */
  readonly status: number;
  /** The replica that answered (X-Capserve-Upstream), '' when none did. */
  readonly upstream: string;
  /** The stream ended with its finish_reason and [DONE]. */
  readonly complete: boolean;
  readonly startedAt: number;
  readonly endedAt: number;
  readonly completionTokens: number;
  readonly error: string | null;
}

/** One streaming chat completion through `port`: status, which replica, and whether the stream ended properly. */
export function streamChatOnce(
  port: number,
  conversation: string,
  body: Record<string, unknown>,
  onResponse?: (upstream: string, status: number) => void,
): Promise<Attempt> {
  const startedAt = performance.now();
  return new Promise((resolve) => {
    let settled = false;
    const done = (a: Omit<Attempt, 'startedAt' | 'endedAt'>): void => {
      if (settled) return;
      settled = true;
      resolve({ ...a, startedAt, endedAt: performance.now() });
    };
    const req = request(
      {
        host: '127.0.0.1',
        port,
        method: 'POST',
        path: '/v1/chat/completions',
        headers: { 'content-type': 'application/json', 'x-capserve-conversation': conversation },
      },
      (res) => {
        const upstream = String(res.headers['x-capserve-upstream'] ?? '');
        const status = res.statusCode ?? 0;
        onResponse?.(upstream, status);
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (text += chunk));
        res.on('end', () => {
          const usage = /"completion_tokens":(\d+)/.exec(text);
          const complete =
            status === 200 && text.endsWith('data: [DONE]\n\n') && /"finish_reason":"(stop|length)"/.test(text) && !text.includes('data: {"error"');
          done({
            status,
            upstream,
            complete,
            completionTokens: usage ? Number(usage[1]) : 0,
            error: complete ? null : `status ${status}: ${text.slice(-200)}`,
          });
        });
        // A replica killed mid-stream: nginx closes the client connection before the last chunk.
        res.on('error', (err) => done({ status, upstream, complete: false, completionTokens: 0, error: `stream cut: ${err.message}` }));
        res.on('aborted', () => done({ status, upstream, complete: false, completionTokens: 0, error: 'stream cut (aborted)' }));
      },
    );
    req.on('error', (err) => done({ status: 0, upstream: '', complete: false, completionTokens: 0, error: `connection: ${err.message}` }));
    req.end(JSON.stringify({ ...body, stream: true, stream_options: { include_usage: true } }));
  });
}

export interface RequestOutcome {
  readonly conversation: string;
  readonly attempts: readonly Attempt[];
  /** The last attempt completed. */
  readonly ok: boolean;
}

/**
 * A client that retries on 502/503 and on a stream cut before its end (what a
 * replica killed mid-stream leaves), up to `maxAttempts`, with a short pause.
 */
export async function streamChatWithRetry(
  port: number,
  conversation: string,
  body: Record<string, unknown>,
  maxAttempts = 5,
  onResponse?: (upstream: string, status: number) => void,
): Promise<RequestOutcome> {
  const attempts: Attempt[] = [];
  for (let i = 0; i < maxAttempts; i++) {
    const a = await streamChatOnce(port, conversation, body, onResponse);
    attempts.push(a);
    if (a.complete) return { conversation, attempts, ok: true };
    const retryable = a.status === 502 || a.status === 503 || (a.status === 200 && !a.complete);
    if (!retryable) break;
    await sleep(100 * (i + 1));
  }
  return { conversation, attempts, ok: false };
}

/**
 * `clients` concurrent clients, each sending its own conversation's requests one
 * after another until `total` requests have been started; `onProgress` sees the
 * number finished after each, `onResponse` each response's headers as they
 * arrive (which replica answered, with what status), while its stream is running.
 */
export async function runLoad(
  port: number,
  options: {
    readonly clients: number;
    readonly total: number;
    readonly body: Record<string, unknown>;
    readonly onProgress?: (finished: number) => void;
    readonly onResponse?: (upstream: string, status: number) => void;
  },
): Promise<{ readonly outcomes: RequestOutcome[]; readonly seconds: number }> {
  const outcomes: RequestOutcome[] = [];
  let started = 0;
  const t0 = performance.now();
  const client = async (id: number): Promise<void> => {
    while (started < options.total) {
      started++;
      outcomes.push(await streamChatWithRetry(port, `conversation-${id}`, options.body, 5, options.onResponse));
      options.onProgress?.(outcomes.length);
    }
  };
  await Promise.all(Array.from({ length: options.clients }, (_, i) => client(i)));
  return { outcomes, seconds: (performance.now() - t0) / 1000 };
}
