/**
 * Logprobs in OpenAI's two shapes (chat's `logprobs.content[]`, completions'
 * legacy object). Every string is the engine's in-context decode of its token
 * (model/token-text.ts): the sampled token's and its alternatives' alike, so a
 * `top_logprobs` key equals the `tokens` entry it stands for.
 */
import type { TokenOut } from './generation.js';

const bytesOf = (s: string): number[] => Array.from(Buffer.from(s, 'utf8'));

export interface ChatTopLogprob {
  readonly token: string;
  readonly logprob: number;
  readonly bytes: number[];
}

export interface ChatTokenLogprob extends ChatTopLogprob {
  readonly top_logprobs: ChatTopLogprob[];
}

/** One entry of chat's `logprobs.content[]`. */
export function chatLogprob(event: TokenOut): ChatTokenLogprob {
  const token = event.tokenText;
  const top = (event.topLogprobs ?? []).map((t) => ({ token: t.text, logprob: t.logprob, bytes: bytesOf(t.text) }));
  return { token, logprob: event.logprob ?? 0, bytes: bytesOf(token), top_logprobs: top };
}

/** The legacy completions `logprobs` object; echoed prompt tokens have null where nothing predicts them. */
export interface LegacyLogprobs {
  readonly tokens: string[];
  readonly token_logprobs: (number | null)[];
  readonly top_logprobs: (Record<string, number> | null)[];
  readonly text_offset: number[];
}

export function emptyLegacyLogprobs(): LegacyLogprobs {
  return { tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] };
}

/**
 * Appends one token; `offset` is where its text starts in the choice's text. As
 * OpenAI and vLLM do, the sampled token is always among its top_logprobs (so
 * `logprobs: 0` lists it alone, and `logprobs: k` may list k + 1).
 */
export function appendLegacyLogprob(
  into: LegacyLogprobs,
  token: { readonly text: string; readonly logprob: number | null; readonly top: readonly { readonly text: string; readonly logprob: number }[] | null },
  offset: number,
): void {
  let top: Record<string, number> | null = null;
  if (token.top !== null) {
    top = {};
    for (const t of token.top) if (!(t.text in top)) top[t.text] = t.logprob;
    if (token.logprob !== null && !(token.text in top)) top[token.text] = token.logprob;
  }
  into.tokens.push(token.text);
  into.token_logprobs.push(token.logprob);
  into.top_logprobs.push(top);
  into.text_offset.push(offset);
}

/** A generated token in appendLegacyLogprob's terms. */
export function legacyToken(event: TokenOut): { text: string; logprob: number; top: readonly { text: string; logprob: number }[] } {
  return { text: event.tokenText, logprob: event.logprob ?? 0, top: event.topLogprobs ?? [] };
}
