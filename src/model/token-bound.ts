/**
 * A provable lower bound on the tokens a text encodes to, from its UTF-8 length
 * alone, so a prompt that cannot fit is refused before it is tokenized.
 *
 * Why it holds: every token stands for input bytes no longer than its own
 * vocabulary piece in UTF-8 (a byte-level piece has one character per byte; a
 * SentencePiece piece spells its text with "▁" for a space; a byte-fallback
 * piece "<0x0A>" stands for one byte; an added token for its own content; an
 * unknown character is one token of at most 4 bytes). It only holds when nothing
 * before the model drops or shrinks text, so the bound is offered only for
 * normalizers, pre-tokenizers and models on an allowlist, and for no added token
 * that absorbs surrounding whitespace; otherwise there is no bound (null) and the
 * caller tokenizes as usual.
 */

type Json = Record<string, unknown>;

const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);
const utf8 = (s: string): number => Buffer.byteLength(s, 'utf8');

/** Normalizers that never make the text shorter in bytes. */
function normalizerKeepsBytes(n: unknown): boolean {
  if (n === null || n === undefined) return true;
  if (!isObject(n)) return false;
  switch (n['type']) {
    case 'Prepend':
      return true;
    case 'Replace': {
      const pattern = n['pattern'];
      const from = isObject(pattern) ? pattern['String'] : undefined;
      const to = n['content'];
      return typeof from === 'string' && typeof to === 'string' && utf8(to) >= utf8(from);
    }
    case 'Sequence': {
      const list = n['normalizers'];
      return Array.isArray(list) && list.every(normalizerKeepsBytes);
    }
    default:
      return false;
  }
}

/** Pre-tokenizers that split without dropping anything. */
function preTokenizerKeepsText(p: unknown): boolean {
  if (p === null || p === undefined) return true;
  if (!isObject(p)) return false;
  switch (p['type']) {
    case 'ByteLevel':
    case 'Metaspace':
    case 'Digits':
      return true;
    case 'Split':
    case 'Punctuation':
      return p['behavior'] !== 'Removed';
    case 'Sequence': {
      const list = p['pretokenizers'];
      return Array.isArray(list) && list.every(preTokenizerKeepsText);
    }
    default:
      return false;
  }
}

/**
 * The most input bytes one token can stand for under this tokenizer.json, or
 * null when no such bound is provable.
 */
export function maxBytesPerToken(tokenizerJson: unknown): number | null {
  if (!isObject(tokenizerJson)) return null;
  if (!normalizerKeepsBytes(tokenizerJson['normalizer']) || !preTokenizerKeepsText(tokenizerJson['pre_tokenizer'])) return null;
  const model = tokenizerJson['model'];
  if (!isObject(model) || (model['type'] !== 'BPE' && model['type'] !== 'Unigram')) return null;
  // A fused run of unknown characters is one token of any length.
  if (model['fuse_unk'] === true && model['byte_fallback'] !== true) return null;
  let most = 4; // one unknown character
  const vocab = model['vocab'];
  if (isObject(vocab)) {
    for (const piece of Object.keys(vocab)) most = Math.max(most, utf8(piece));
  } else if (Array.isArray(vocab)) {
    for (const entry of vocab) {
      const piece: unknown = Array.isArray(entry) ? entry[0] : undefined;
      if (typeof piece !== 'string') return null;
      most = Math.max(most, utf8(piece));
    }
  } else {
    return null;
  }
  const added = tokenizerJson['added_tokens'] ?? [];
  if (!Array.isArray(added)) return null;
  for (const t of added) {
    if (!isObject(t) || typeof t['content'] !== 'string') return null;
    if (t['lstrip'] === true || t['rstrip'] === true) return null;
    most = Math.max(most, utf8(t['content']));
  }
  return most;
}

/** At least this many tokens encode `bytes` bytes of text. */
export function minTokensFor(bytes: number, maxBytes: number): number {
  return Math.ceil(bytes / maxBytes);
}
