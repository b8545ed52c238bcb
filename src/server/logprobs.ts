import type { EngineClient } from '../engine/types.js';
import type { TokenOut } from './generation.js';

/** Token strings for logprobs, decoded once per id per request. */
export class TokenStrings {
  private readonly cache = new Map<number, string>();

  constructor(private readonly engine: EngineClient) {}

  of(id: number): string {
    let s = this.cache.get(id);
    if (s === undefined) {
      s = this.engine.detokenize([id]);
      this.cache.set(id, s);
    }
    return s;
  }

  /**
   * The sampled token's string: the text it made visible when there is any (so
   * the strings concatenate to the completion, as OpenAI's do, and keep the
   * leading space a lone-id decode strips), else its lone decode.
   */
  sampled(event: TokenOut): string {
    return event.text !== '' ? event.text : this.of(event.tokenId);
  }
}

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
export function chatLogprob(event: TokenOut, strings: TokenStrings): ChatTokenLogprob {
  const token = strings.sampled(event);
  const top = (event.topLogprobs ?? []).map((t) => {
    const s = t.tokenId === event.tokenId ? token : strings.of(t.tokenId);
    return { token: s, logprob: t.logprob, bytes: bytesOf(s) };
  });
  return { token, logprob: event.logprob ?? 0, bytes: bytesOf(token), top_logprobs: top };
}

/** The legacy completions `logprobs` object. */
export interface LegacyLogprobs {
  readonly tokens: string[];
  readonly token_logprobs: number[];
  readonly top_logprobs: Record<string, number>[];
  readonly text_offset: number[];
}

export function emptyLegacyLogprobs(): LegacyLogprobs {
  return { tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] };
}

/** Appends one token; `offset` is where its text starts in the completion. */
export function appendLegacyLogprob(into: LegacyLogprobs, event: TokenOut, offset: number, strings: TokenStrings): void {
  const token = strings.sampled(event);
  const top: Record<string, number> = {};
  for (const t of event.topLogprobs ?? []) top[t.tokenId === event.tokenId ? token : strings.of(t.tokenId)] = t.logprob;
  into.tokens.push(token);
  into.token_logprobs.push(event.logprob ?? 0);
  into.top_logprobs.push(top);
  into.text_offset.push(offset);
}
