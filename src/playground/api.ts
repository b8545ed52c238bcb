/**
 * The playground's only channel to capserve: JSON GETs (/v1/policies, /health),
 * the Prometheus text of /metrics, and one streamed response over the
 * /v1/responses websocket (response.create, deltas, response.cancel,
 * response.completed). Time to first token and tokens/s are measured here,
 * in the browser, from when the request was sent. The API key, when the user
 * gives one, goes in the Authorization header, and on the websocket as the
 * `capserve.bearer.<base64url>` subprotocol (browsers cannot set its headers).
 */

export interface PolicyInfo {
  readonly name: string;
  readonly kind: string;
  readonly method: string;
  readonly params: Readonly<Record<string, unknown>>;
  readonly cap: { readonly favors: readonly string[]; readonly costs: string };
}

/** The response's `cap` object (see the server's capObject); only what the page shows is typed. */
export interface CapReport {
  readonly policy: string;
  readonly kind: string;
  readonly prompt_tokens: number;
  readonly kv_tokens_retained: number | null;
  readonly context_tokens: number | null;
  readonly compression_ratio: number | null;
  readonly attention_mass_retained: number | null;
  readonly overflow: unknown;
}

export interface Settings {
  /** null: the server's router decides (default policy, rules, favor). */
  readonly policy: string | null;
  readonly favor: readonly string[];
  readonly temperature: number;
  readonly topP: number;
  readonly maxOutputTokens: number;
  readonly seed: number | null;
  readonly ignoreEos: boolean;
}

export interface ChatTurn {
  readonly role: 'user' | 'assistant';
  readonly content: string;
}

export type RunStatus = 'completed' | 'incomplete' | 'cancelled' | 'error';

export interface RunResult {
  readonly status: RunStatus;
  readonly text: string;
  readonly cap: CapReport | null;
  readonly outputTokens: number | null;
  readonly ttftMs: number | null;
  readonly totalMs: number;
  readonly tokensPerSecond: number | null;
  readonly error: string | null;
}

const KEY_STORAGE = 'capserve.apiKey';

export function apiKey(): string {
  return sessionStorage.getItem(KEY_STORAGE) ?? '';
}

export function setApiKey(key: string): void {
  if (key === '') sessionStorage.removeItem(KEY_STORAGE);
  else sessionStorage.setItem(KEY_STORAGE, key);
}

function authHeaders(): Record<string, string> {
  const key = apiKey();
  return key === '' ? {} : { authorization: `Bearer ${key}` };
}

/** The server's OpenAI-shaped error message, or the status line. */
async function failure(res: Response): Promise<Error> {
  const text = await res.text();
  try {
    const body = JSON.parse(text) as { error?: { message?: string } };
    return new Error(`${res.status}: ${body.error?.message ?? text}`);
  } catch {
    return new Error(`${res.status}: ${text.slice(0, 200)}`);
  }
}

export async function getJson<T>(path: string): Promise<T> {
  const res = await fetch(path, { headers: authHeaders() });
  if (!res.ok) throw await failure(res);
  return (await res.json()) as T;
}

export async function getText(path: string): Promise<string> {
  const res = await fetch(path, { headers: authHeaders() });
  if (!res.ok) throw await failure(res);
  return res.text();
}

function base64url(text: string): string {
  let binary = '';
  for (const byte of new TextEncoder().encode(text)) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

/** The response.create event for a conversation under the given settings. */
export function createEvent(messages: readonly ChatTurn[], settings: Settings): Record<string, unknown> {
  const cap: Record<string, unknown> = {};
  if (settings.policy !== null) cap['policy'] = settings.policy;
  if (settings.favor.length > 0) cap['favor'] = settings.favor;
  return {
    type: 'response.create',
    messages,
    temperature: settings.temperature,
    top_p: settings.topP,
    max_output_tokens: settings.maxOutputTokens,
    ...(settings.seed !== null ? { seed: settings.seed } : {}),
    ...(settings.ignoreEos ? { ignore_eos: true } : {}),
    ...(Object.keys(cap).length > 0 ? { cap } : {}),
  };
}

interface CompletedResponse {
  readonly status: 'completed' | 'incomplete' | 'cancelled';
  readonly output_text: string;
  readonly usage: { readonly output_tokens: number } | null;
  readonly cap: CapReport;
}

/**
 * One streamed response on its own websocket. `onDelta` gets each text piece
 * as it arrives; `done` settles with the final status, text, cap report and
 * the browser-side latency figures (it never rejects).
 */
export class ResponseStream {
  readonly done: Promise<RunResult>;
  private socket: WebSocket | null = null;
  private cancelled = false;
  /** response.created seen: the server has a running response that response.cancel can stop. */
  private created = false;

  constructor(messages: readonly ChatTurn[], settings: Settings, onDelta: (text: string) => void) {
    this.done = new Promise<RunResult>((resolve) => {
      const started = performance.now();
      let firstAt: number | null = null;
      let lastAt: number | null = null;
      let text = '';
      let settled = false;
      const finish = (status: RunStatus, cap: CapReport | null, outputTokens: number | null, error: string | null): void => {
        if (settled) return;
        settled = true;
        const ttftMs = firstAt === null ? null : firstAt - started;
        // Decode rate: tokens after the first over the time they took (null for fewer than two).
        const tokensPerSecond =
          outputTokens !== null && outputTokens > 1 && firstAt !== null && lastAt !== null && lastAt > firstAt
            ? ((outputTokens - 1) * 1000) / (lastAt - firstAt)
            : null;
        resolve({ status, text, cap, outputTokens, ttftMs, totalMs: performance.now() - started, tokensPerSecond, error });
        this.socket?.close();
      };
      const url = `${location.protocol === 'https:' ? 'wss:' : 'ws:'}//${location.host}/v1/responses`;
      const key = apiKey();
      const socket = key === '' ? new WebSocket(url) : new WebSocket(url, ['capserve', `capserve.bearer.${base64url(key)}`]);
      this.socket = socket;
      socket.onopen = () => {
        if (this.cancelled) {
          finish('cancelled', null, null, null);
          return;
        }
        socket.send(JSON.stringify(createEvent(messages, settings)));
      };
      socket.onmessage = (message: MessageEvent<string>) => {
        const event = JSON.parse(message.data) as { type: string; delta?: string; response?: CompletedResponse; error?: { message: string } };
        if (event.type === 'response.created') {
          this.created = true;
          if (this.cancelled) socket.send(JSON.stringify({ type: 'response.cancel' }));
        } else if (event.type === 'response.output_text.delta' && event.delta !== undefined) {
          const now = performance.now();
          firstAt ??= now;
          lastAt = now;
          text += event.delta;
          onDelta(event.delta);
        } else if (event.type === 'response.completed' && event.response !== undefined) {
          const r = event.response;
          text = r.output_text;
          finish(r.status, r.cap, r.usage?.output_tokens ?? null, null);
        } else if (event.type === 'error') {
          finish('error', null, null, event.error?.message ?? 'error');
        }
      };
      socket.onerror = () => finish('error', null, null, 'websocket error (is the server up? is the API key right?)');
      socket.onclose = (e: CloseEvent) => finish('error', null, null, `connection closed (${e.code}${e.reason !== '' ? `: ${e.reason}` : ''})`);
    });
  }

  /** Asks the server to stop; `done` then settles with status cancelled and what was generated so far. */
  cancel(): void {
    if (this.cancelled) return;
    this.cancelled = true;
    // Before response.created the server is still preparing; the cancel goes out when it is created.
    if (this.created && this.socket?.readyState === WebSocket.OPEN) this.socket.send(JSON.stringify({ type: 'response.cancel' }));
  }
}
