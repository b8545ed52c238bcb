/**
 * Builds a byte-level BPE tokenizer.json (GPT-2 / Qwen / SmolLM structure) of an
 * exact vocabulary size: special tokens, the 256 byte symbols, merges learned from
 * a built-in English word list, then deterministic filler merges when a large
 * vocabulary (e.g. SmolLM's 49152) asks for more pieces than the word list yields.
 */
import { trainBpe, type Merge } from './bpe-trainer.js';
import { ENGLISH_WORDS } from './english-words.js';

export const SPECIAL_TOKENS = ['<s>', '</s>', '<|im_start|>', '<|im_end|>'] as const;
export const BOS_ID = 0;
export const EOS_ID = 1;
export const IM_END_ID = 3;

export const CHATML_TEMPLATE =
  "{{ bos_token }}{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/** GPT-2's reversible byte -> printable character map, so every byte is a vocab symbol. */
export function byteToUnicode(): string[] {
  const printable: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) printable.push(b);
  for (let b = 0xa1; b <= 0xac; b++) printable.push(b);
  for (let b = 0xae; b <= 0xff; b++) printable.push(b);
  const table: string[] = new Array<string>(256);
  let extra = 0;
  for (let b = 0; b < 256; b++) {
    if (printable.includes(b)) table[b] = String.fromCodePoint(b);
    else table[b] = String.fromCodePoint(256 + extra++);
  }
  return table;
}

function capitalize(w: string): string {
  return w.charAt(0).toUpperCase() + w.slice(1);
}

/** Letters by English frequency: the suffixes used to make filler pieces. */
const FILLER_LETTERS = 'etaoinshrdlcumwfgypbvkjxqz';

export interface BuiltTokenizer {
  readonly tokenizerJson: Record<string, unknown>;
  readonly tokenizerConfig: Record<string, unknown>;
  readonly vocabSize: number;
}

export function buildTokenizer(vocabSize: number, modelMaxLength: number): BuiltTokenizer {
  const bytes = byteToUnicode();
  const base = SPECIAL_TOKENS.length + 256;
  if (vocabSize < base) throw new Error(`tokenizer vocab ${vocabSize} is smaller than ${base} (specials + bytes)`);
  const space = bytes[0x20]!;

  const corpus = new Map<string, { symbols: string[]; count: number }>();
  const add = (form: string, count: number): void => {
    if (count < 1) return;
    const symbols = [...Buffer.from(form, 'utf8')].map((b) => bytes[b]!);
    const key = symbols.join('');
    const prev = corpus.get(key);
    if (prev !== undefined) prev.count += count;
    else corpus.set(key, { symbols, count });
  };
  ENGLISH_WORDS.forEach((word, rank) => {
    const count = Math.floor(1_000_000 / (rank + 10));
    add(' ' + word, count);
    add(word, Math.floor(count / 4));
    add(' ' + capitalize(word), Math.floor(count / 8));
  });

  const vocab = new Map<string, number>();
  SPECIAL_TOKENS.forEach((t, i) => vocab.set(t, i));
  for (const sym of bytes) vocab.set(sym, vocab.size);

  const merges: Merge[] = [];
  for (const m of trainBpe(corpus, vocabSize - base)) {
    const piece = m[0] + m[1];
    if (vocab.has(piece)) continue;
    vocab.set(piece, vocab.size);
    merges.push(m);
  }
  // Filler: extend existing pieces (in id order) by one frequent letter until the size is reached.
  const letters = Array.from(FILLER_LETTERS, (c) => bytes[c.charCodeAt(0)]!);
  const pieces = [...vocab.keys()].slice(base);
  if (pieces.length === 0) pieces.push(space);
  for (let i = 0; vocab.size < vocabSize; i++) {
    const head = pieces[i];
    if (head === undefined) throw new Error('tokenizer filler ran out of pieces to extend');
    for (const letter of letters) {
      if (vocab.size >= vocabSize) break;
      const piece = head + letter;
      if (vocab.has(piece)) continue;
      vocab.set(piece, vocab.size);
      merges.push([head, letter]);
      pieces.push(piece);
    }
  }

  const addedTokens = SPECIAL_TOKENS.map((content, id) => ({
    id,
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  }));
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true };
  const bos = SPECIAL_TOKENS[BOS_ID];
  const tokenizerJson: Record<string, unknown> = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: addedTokens,
    normalizer: null,
    pre_tokenizer: byteLevel,
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [
        { SpecialToken: { id: bos, type_id: 0 } },
        { Sequence: { id: 'A', type_id: 0 } },
        { SpecialToken: { id: bos, type_id: 1 } },
        { Sequence: { id: 'B', type_id: 1 } },
      ],
      special_tokens: { [bos]: { id: bos, ids: [BOS_ID], tokens: [bos] } },
    },
    decoder: byteLevel,
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab: Object.fromEntries(vocab),
      // "a b" strings (not pairs) load in every tokenizers version; byte-level pieces never contain a space.
      merges: merges.map(([a, b]) => `${a} ${b}`),
    },
  };
  const tokenizerConfig: Record<string, unknown> = {
    add_bos_token: true,
    add_eos_token: false,
    added_tokens_decoder: Object.fromEntries(addedTokens.map(({ id, ...rest }) => [String(id), rest])),
    bos_token: bos,
    eos_token: SPECIAL_TOKENS[EOS_ID],
    pad_token: null,
    unk_token: null,
    clean_up_tokenization_spaces: false,
    model_max_length: modelMaxLength,
    tokenizer_class: 'PreTrainedTokenizerFast',
    chat_template: CHATML_TEMPLATE,
  };
  return { tokenizerJson, tokenizerConfig, vocabSize: vocab.size };
}
