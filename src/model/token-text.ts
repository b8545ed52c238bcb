/**
 * The text one token adds after the tokens before it: decode(context + [id]) minus
 * decode(context). Decoders are not concatenative at the start of a sequence
 * (SentencePiece strips the first leading space, byte-fallback pieces need their
 * neighbours), so a token's string is only right in context: `▁there` after
 * "time," is " there", alone it is "there". One function for every such string:
 * streamed deltas' logprob alternatives, the sampled token's fallback, and echoed
 * prompt tokens, so a `top_logprobs` key equals the `tokens` entry it stands for.
 */

/** Ids of context kept before a token; enough for any decoder's look-behind (vLLM keeps 5). */
export const TOKEN_CONTEXT = 6;

const REPLACEMENT_CHAR = '\uFFFD';
const BYTE_PIECE = /^<0x([0-9A-Fa-f]{2})>$/;

export function commonPrefixLength(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a.charCodeAt(i) === b.charCodeAt(i)) i++;
  return i;
}

export interface TokenTextDecoder {
  /** decode() with the caller's skip-special-tokens choice. */
  decode(ids: readonly number[]): string;
  /** decode() keeping special tokens (what a special token's string falls back to). */
  decodeKeepingSpecial(ids: readonly number[]): string;
  piece(id: number): string;
}

/**
 * decode(context + [id]) minus decode(context), over the last TOKEN_CONTEXT ids of context: the text `id` makes visible.
 * Asynchronous: the server's decoder is EngineClient.detokenize.
 */
export async function visibleTextAfter(decode: (ids: readonly number[]) => Promise<string>, context: readonly number[], id: number): Promise<string> {
  const tail = lastContext(context);
  const [before, after] = await Promise.all([decode(tail), decode([...tail, id])]);
  return after.slice(commonPrefixLength(before, after));
}

function lastContext(context: readonly number[]): readonly number[] {
  return context.length > TOKEN_CONTEXT ? context.slice(context.length - TOKEN_CONTEXT) : context;
}

/** visibleTextAfter for several candidate ids after one context (decodes the context once). */
function visibleTextsAfter(decode: (ids: readonly number[]) => string, context: readonly number[], ids: readonly number[]): string[] {
  const tail = lastContext(context);
  const before = decode(tail);
  return ids.map((id) => {
    const after = decode([...tail, id]);
    return after.slice(commonPrefixLength(before, after));
  });
}

/**
 * The string for `id` after `context` (only its last TOKEN_CONTEXT ids matter).
 * A special token that decodes to nothing in context is its own text ("</s>");
 * a byte-fallback piece that is only part of a character is OpenAI's
 * "bytes:\xNN", so two alternatives never share the string U+FFFD.
 */
export function tokenTextAfter(decoder: TokenTextDecoder, context: readonly number[], id: number): string {
  return tokenTextsAfter(decoder, context, [id])[0] ?? '';
}

/**
 * tokenTextAfter for several alternatives at one position (the context is decoded
 * once). Strings stay distinct: where a byte-fallback piece reads the same as
 * another token (`<0x22>` and `"`), the byte piece is its "bytes:\xNN" form.
 */
export function tokenTextsAfter(decoder: TokenTextDecoder, context: readonly number[], ids: readonly number[]): string[] {
  const texts = visibleTextsAfter((list) => decoder.decode(list), context, ids);
  const strings = ids.map((id, i) => tokenString(decoder, id, texts[i] ?? ''));
  const seen = new Map<string, number>();
  for (const s of strings) seen.set(s, (seen.get(s) ?? 0) + 1);
  return strings.map((s, i) => {
    if ((seen.get(s) ?? 0) < 2) return s;
    const byte = BYTE_PIECE.exec(decoder.piece(ids[i] ?? 0));
    return byte === null ? s : `bytes:\\x${(byte[1] ?? '').toLowerCase()}`;
  });
}

function tokenString(decoder: TokenTextDecoder, id: number, text: string): string {
  if (text === '') return decoder.decodeKeepingSpecial([id]);
  if (text.includes(REPLACEMENT_CHAR)) {
    const byte = BYTE_PIECE.exec(decoder.piece(id));
    if (byte !== null) return `bytes:\\x${(byte[1] ?? '').toLowerCase()}`;
  }
  return text;
}
