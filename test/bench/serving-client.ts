/**
 * What the serving bench needs of a real server: start `capserve serve` in its
 * own process with config overrides and wait until it is healthy, stop it,
 * read its resident set, and stream one chat completion while timing the
 * first token and every gap between tokens (one SSE chunk per token: the
 * request asks for logprobs, so a token whose text is held back still comes).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';

export interface ChatMessage {
  readonly role: 'system' | 'user' | 'assistant';
  readonly content: string;
}

export interface StreamTiming {
  readonly ttftMs: number;
  readonly itlMs: readonly number[];
  readonly tokens: number;
  readonly text: string;
  /** Prompt tokens the prefix cache served (the finish chunk's cap.prefix_cache); 0 when it reported none. */
  readonly cachedTokens: number;
}

export interface Server {
  readonly base: string;
  readonly pid: number;
  stop(): Promise<void>;
}

async function waitHealthy(base: string, child: ChildProcess, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (child.exitCode !== null) throw new Error(`server exited with code ${child.exitCode} before it was healthy`);
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

/** Starts the server on `model` with `--set` overrides; resolves once /health answers 200. */
export async function startServer(model: string, port: number, sets: readonly string[]): Promise<Server> {
  const args = ['dist/src/cli.js', 'serve', '--model', model, '--port', String(port), '--served-model-name', 'bench', ...sets.flatMap((s) => ['--set', s])];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, CAPSERVE_LOG_LEVEL: 'warn' } });
  const base = `http://127.0.0.1:${port}`;
  const exited = new Promise<void>((res) => child.once('exit', () => res()));
  try {
    await waitHealthy(base, child, 900_000);
  } catch (err) {
    child.kill('SIGTERM');
    await exited;
    throw err;
  }
  return {
    base,
    pid: child.pid ?? -1,
    async stop() {
      child.kill('SIGTERM');
      await exited;
    },
  };
}

/** The process's resident set and its peak (Linux /proc), in MiB; NaN elsewhere. */
export function rssMiB(pid: number): { rss: number; peak: number } {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (key: string): number => Number(new RegExp(`${key}:\\s+(\\d+) kB`).exec(status)?.[1] ?? NaN);
    return { rss: kb('VmRSS') / 1024, peak: kb('VmHWM') / 1024 };
  } catch {
    return { rss: NaN, peak: NaN };
  }
}

/** Prompt tokens of `messages` as the server's chat template renders them. */
export async function chatTokens(base: string, messages: readonly ChatMessage[]): Promise<number> {
  const r = await fetch(`${base}/tokenize`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'bench', messages }),
  });
  if (!r.ok) throw new Error(`tokenize: HTTP ${r.status}: ${await r.text()}`);
  return ((await r.json()) as { count: number }).count;
}

/** Streams one greedy chat completion of exactly `maxTokens` tokens. */
export async function streamChat(base: string, messages: readonly ChatMessage[], maxTokens: number): Promise<StreamTiming> {
  const t0 = performance.now();
  const res = await fetch(`${base}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'bench', messages, max_tokens: maxTokens, stream: true, temperature: 0, ignore_eos: true, logprobs: true }),
  });
  if (!res.ok || !res.body) throw new Error(`chat: HTTP ${res.status}: ${await res.text()}`);
  const decoder = new TextDecoder();
  let buf = '';
  let last = 0;
  let ttft = -1;
  let tokens = 0;
  let text = '';
  let cachedTokens = 0;
  const itl: number[] = [];
  for await (const chunk of res.body) {
    buf += decoder.decode(chunk as Uint8Array, { stream: true });
    let idx: number;
    while ((idx = buf.indexOf('\n\n')) >= 0) {
      const event = buf.slice(0, idx);
      buf = buf.slice(idx + 2);
      if (!event.startsWith('data: ') || event === 'data: [DONE]') continue;
      const parsed = JSON.parse(event.slice(6)) as {
        choices?: { delta?: { content?: string }; logprobs?: { content?: unknown[] } | null }[];
        cap?: { prefix_cache?: { cached_tokens?: number } };
      };
      cachedTokens = parsed.cap?.prefix_cache?.cached_tokens ?? cachedTokens;
      const choice = parsed.choices?.[0];
      if (!choice) continue;
      text += choice.delta?.content ?? '';
      // One token per chunk that carries its logprob (the role chunk and the finish chunk carry none).
      if (!choice.logprobs?.content || choice.logprobs.content.length === 0) continue;
      const now = performance.now();
      if (ttft < 0) ttft = now - t0;
      else itl.push(now - last);
      last = now;
      tokens += 1;
    }
  }
  return { ttftMs: ttft, itlMs: itl, tokens, text, cachedTokens };
}
