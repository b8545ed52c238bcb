/**
 * The bytes each token adds to the decoded text (after earlier tokens), from
 * tokenizer.json: what constrained decoding matches grammars against.
 *
 * - Byte-level BPE (GPT-2, Llama 3, Qwen, SmolLM: a ByteLevel decoder): each
 *   character of the piece stands for one byte through GPT-2's bytes_to_unicode.
 * - SentencePiece-style (Llama 2, Mistral, stories260K: "▁" for a space,
 *   "<0xNN>" byte-fallback pieces): "▁" is a space, "<0xNN>" is that byte, the
 *   rest is the piece's UTF-8.
 * Special added tokens (EOS, BOS, chat markers) get null: no grammar produces
 * them. The leading-space strip SentencePiece decoders apply at the very start
 * of a text does not apply to generated tokens, which follow the prompt.
 */
type Json = Record<string, unknown>;
const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

/** GPT-2's bytes_to_unicode, inverted: code point -> byte. */
function unicodeToByte(): Map<number, number> {
  const bytes: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) bytes.push(b);
  for (let b = 0xa1; b <= 0xac; b++) bytes.push(b);
  for (let b = 0xae; b <= 0xff; b++) bytes.push(b);
  const codes = [...bytes];
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bytes.includes(b)) {
      bytes.push(b);
      codes.push(256 + n);
      n++;
    }
  }
  return new Map(codes.map((c, i) => [c, bytes[i] ?? 0]));
}

function usesByteLevel(decoder: unknown): boolean {
  if (!isObject(decoder)) return false;
  if (decoder['type'] === 'ByteLevel') return true;
  const list = decoder['decoders'];
  return decoder['type'] === 'Sequence' && Array.isArray(list) && list.some(usesByteLevel);
}

/** tokenBytes[id] for ids 0..vocabSize-1; null for special tokens and ids without a piece. */
export function tokenByteTable(tokenizerJson: unknown, vocabSize: number): (Uint8Array | null)[] {
  const table: (Uint8Array | null)[] = new Array<Uint8Array | null>(vocabSize).fill(null);
  if (!isObject(tokenizerJson)) return table;
  const model = tokenizerJson['model'];
  const pieces = new Map<number, string>();
  if (isObject(model)) {
    const vocab = model['vocab'];
    if (isObject(vocab)) {
      for (const [piece, id] of Object.entries(vocab)) if (typeof id === 'number') pieces.set(id, piece);
    } else if (Array.isArray(vocab)) {
      vocab.forEach((entry, id) => {
        if (Array.isArray(entry) && typeof entry[0] === 'string') pieces.set(id, entry[0]);
      });
    }
  }
  const byteLevel = usesByteLevel(tokenizerJson['decoder']);
  const fromUnicode = byteLevel ? unicodeToByte() : null;
  for (const [id, piece] of pieces) {
    if (id < 0 || id >= vocabSize) continue;
    if (fromUnicode !== null) {
      const out: number[] = [];
      let ok = true;
      for (const c of piece) {
        const b = fromUnicode.get(c.codePointAt(0) ?? -1);
        if (b === undefined) {
          ok = false;
          break;
        }
        out.push(b);
      }
      table[id] = ok ? Uint8Array.from(out) : Buffer.from(piece, 'utf8');
    } else {
      const byte = /^<0x([0-9A-Fa-f]{2})>$/.exec(piece);
      table[id] = byte !== null ? Uint8Array.of(parseInt(byte[1] ?? '0', 16)) : Buffer.from(piece.replace(/\u2581/g, ' '), 'utf8');
    }
  }
  const added = tokenizerJson['added_tokens'];
  if (Array.isArray(added)) {
    for (const t of added) {
      if (!isObject(t) || typeof t['id'] !== 'number' || typeof t['content'] !== 'string') continue;
      const id = t['id'];
      if (id < 0 || id >= vocabSize) continue;
      table[id] = t['special'] === true ? null : Buffer.from(t['content'], 'utf8');
    }
  }
  return table;
}
