/**
 * TextTokenizer over @huggingface/tokenizers (tokenizer.json + tokenizer_config.json).
 * All the BPE work is the library's; this file adds the incremental decoder and the
 * checkpoint-style error reporting.
 */
import fs from 'node:fs';
import path from 'node:path';
import { Tokenizer as HfTokenizerClass } from '@huggingface/tokenizers';
import { CheckpointError } from './errors.js';
import { commonPrefixLength, TOKEN_CONTEXT, tokenTextAfter, tokenTextsAfter, type TokenTextDecoder } from './token-text.js';
import type { DecodeStream, TextTokenizer } from './tokenizer-types.js';
import { maxBytesPerToken } from './token-bound.js';
import { tokenByteTable } from './token-bytes.js';

const REPLACEMENT_CHAR = '\uFFFD';

function readJson(file: string, required: boolean): unknown {
  if (!fs.existsSync(file)) {
    if (required) throw new CheckpointError('missing_file', file, 'tokenizer file does not exist');
    return null;
  }
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (err) {
    throw new CheckpointError('bad_tokenizer', file, 'is not valid JSON', { cause: err });
  }
}

/**
 * Emits decode(context + ids) minus decode(context), piece by piece (as vLLM's and
 * transformers' streamers do). Each step decodes a window of recent ids and
 * emits the part after the window's already-emitted prefix, holding back text that
 * ends in U+FFFD (an incomplete UTF-8 sequence from byte tokens). The window keeps
 * context before the new ids because decoders are not concatenative at the start
 * (SentencePiece strips the first leading space; byte tokens need their neighbours);
 * the first window is the prompt's tail, so the first token keeps its leading space.
 */
class WindowDecodeStream implements DecodeStream {
  private readonly ids: number[];
  /** First id of the decode window. */
  private windowStart = 0;
  /** Ids before this index are fully emitted (or context). */
  private readIndex: number;
  /** decode(ids[windowStart, readIndex)). */
  private prefixText: string;

  constructor(
    private readonly decoder: TokenTextDecoder,
    context: readonly number[],
  ) {
    this.ids = context.slice(Math.max(0, context.length - TOKEN_CONTEXT));
    this.readIndex = this.ids.length;
    this.prefixText = this.decode(this.ids);
  }

  private decode(ids: readonly number[]): string {
    return this.decoder.decode(ids);
  }

  peek(ids: readonly number[]): string[] {
    return tokenTextsAfter(this.decoder, this.ids, ids);
  }

  push(id: number): string {
    this.ids.push(id);
    const text = this.decode(this.ids.slice(this.windowStart));
    if (text.length <= this.prefixText.length || text.endsWith(REPLACEMENT_CHAR)) return '';
    return this.emit(text);
  }

  flush(): string {
    if (this.readIndex === this.ids.length) return '';
    const text = this.decode(this.ids.slice(this.windowStart));
    return this.emit(text);
  }

  private emit(windowText: string): string {
    let delta: string;
    if (windowText.startsWith(this.prefixText)) {
      delta = windowText.slice(this.prefixText.length);
    } else {
      // A decoder rewrote text across the window boundary (e.g. cleanup of " .", or a context
      // ending mid-character that this token completes): emit from where the texts part.
      const emitted = this.decode(this.ids.slice(0, this.readIndex));
      const full = this.decode(this.ids);
      delta = full.slice(commonPrefixLength(emitted, full));
    }
    const previousRead = this.readIndex;
    this.readIndex = this.ids.length;
    // Slide the window to start at the previous emission point, but only when that
    // context decodes to visible text on its own: then a decoder's leading-space strip
    // (SentencePiece) provably falls on the context, never on the text still to come.
    const candidateContext = this.decode(this.ids.slice(previousRead, this.readIndex));
    if (candidateContext.length > 0 && previousRead > this.windowStart) {
      this.windowStart = previousRead;
      this.prefixText = candidateContext;
    } else {
      this.prefixText = this.decode(this.ids.slice(this.windowStart, this.readIndex));
    }
    return delta;
  }
}

/**
 * The part of @huggingface/tokenizers' `Tokenizer` used here, typed as its .d.ts declares it.
 * Its published types import extensionless relative paths, which NodeNext resolution cannot
 * follow (skipLibCheck hides the errors), so the class itself arrives untyped.
 */
interface Tokenizer {
  encode(text: string, options?: { add_special_tokens?: boolean }): { ids: number[] };
  decode(ids: number[], options?: { skip_special_tokens?: boolean }): string;
  id_to_token(id: number): string | undefined;
  get_vocab(withAddedTokens?: boolean): Map<string, number>;
}
const TokenizerCtor = HfTokenizerClass as unknown as new (tokenizerJson: object, configJson: object) => Tokenizer;

class HfTextTokenizer implements TextTokenizer {
  readonly vocabSize: number;

  constructor(
    private readonly tokenizer: Tokenizer,
    private readonly file: string,
    readonly maxBytesPerToken: number | null,
    private readonly json: unknown,
  ) {
    let maxId = -1;
    for (const id of tokenizer.get_vocab(true).values()) if (id > maxId) maxId = id;
    this.vocabSize = maxId + 1;
  }

  encode(text: string, options?: { addSpecialTokens?: boolean }): number[] {
    return this.tokenizer.encode(text, { add_special_tokens: options?.addSpecialTokens ?? true }).ids;
  }

  decode(ids: readonly number[], options?: { skipSpecialTokens?: boolean }): string {
    for (const id of ids) this.checkId(id);
    if (ids.length === 0) return '';
    return this.tokenizer.decode([...ids], { skip_special_tokens: options?.skipSpecialTokens ?? false });
  }

  /** '' for an id in range that has no piece (a model vocab padded past the tokenizer's). */
  idToPiece(id: number): string {
    this.checkId(id);
    return this.tokenizer.id_to_token(id) ?? '';
  }

  createDecodeStream(options?: { skipSpecialTokens?: boolean; context?: readonly number[] }): DecodeStream {
    return new WindowDecodeStream(this.textDecoder(options?.skipSpecialTokens ?? false), options?.context ?? []);
  }

  tokenText(context: readonly number[], id: number, options?: { skipSpecialTokens?: boolean }): string {
    return tokenTextAfter(this.textDecoder(options?.skipSpecialTokens ?? false), context, id);
  }

  tokenTexts(context: readonly number[], ids: readonly number[], options?: { skipSpecialTokens?: boolean }): string[] {
    return tokenTextsAfter(this.textDecoder(options?.skipSpecialTokens ?? false), context, ids);
  }

  private textDecoder(skipSpecialTokens: boolean): TokenTextDecoder {
    return {
      decode: (ids) => this.decode(ids, { skipSpecialTokens }),
      decodeKeepingSpecial: (ids) => this.decode(ids, { skipSpecialTokens: false }),
      piece: (id) => this.idToPiece(id),
    };
  }

  #bytes: (Uint8Array | null)[] | null = null;

  tokenBytes(): readonly (Uint8Array | null)[] {
    this.#bytes ??= tokenByteTable(this.json, this.vocabSize);
    return this.#bytes;
  }

  private checkId(id: number): void {
    if (!Number.isSafeInteger(id) || id < 0) throw new RangeError(`token id ${id} is not a non-negative integer (tokenizer ${this.file})`);
  }
}

/** What token-bytes.ts reads (the vocabulary, decoder and added tokens), without the merges, kept for the first constrained request. */
function bytesSource(json: object): unknown {
  const j = json as Record<string, unknown>;
  const model = j['model'];
  const vocab = typeof model === 'object' && model !== null ? (model as Record<string, unknown>)['vocab'] : undefined;
  return { model: { vocab }, decoder: j['decoder'], added_tokens: j['added_tokens'] };
}

export function loadTokenizer(dir: string): TextTokenizer {
  const file = path.join(dir, 'tokenizer.json');
  const tokenizerJson = readJson(file, true);
  const configJson = readJson(path.join(dir, 'tokenizer_config.json'), false) ?? {};
  if (typeof tokenizerJson !== 'object' || tokenizerJson === null) throw new CheckpointError('bad_tokenizer', file, 'is not a JSON object');
  if (typeof configJson !== 'object') throw new CheckpointError('bad_tokenizer', path.join(dir, 'tokenizer_config.json'), 'is not a JSON object');
  let tokenizer: Tokenizer;
  try {
    tokenizer = new TokenizerCtor(tokenizerJson, configJson);
  } catch (err) {
    throw new CheckpointError('bad_tokenizer', file, `cannot be loaded: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
  return new HfTextTokenizer(tokenizer, file, maxBytesPerToken(tokenizerJson), bytesSource(tokenizerJson));
}
