/**
 * The token lower bound from byte length holds on a real tokenizer (stories260K:
 * SentencePiece BPE with byte fallback) for random texts of every kind, and is
 * withheld for tokenizers that can drop or shrink text.
 */
import t from 'tap';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { maxBytesPerToken, minTokensFor } from '../../../src/model/token-bound.js';
import { loadTokenizer } from '../../../src/model/tokenizer.js';
import { missingShared, STORIES_DIR } from '../../helpers/shared.js';

const skip = missingShared('models', 'stories260K') ?? false;

t.test('stories260K: tokens >= ceil(bytes / maxBytesPerToken) for random texts, spaces, unicode and special tokens', { skip }, async () => {
  const tok = loadTokenizer(STORIES_DIR);
  const m = tok.maxBytesPerToken ?? null;
  assert.ok(m !== null && m >= 4, `bound ${m}`);
  const alphabet = ['a', 'e', 'the', ' ', '  ', '\n', 'é', '日本', '🙂', '<s>', '</s>', '<unk>', 'Once upon a time', '\u0301', '\t', '0123'];
  let seed = 7;
  const next = (): number => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
  let tightest = Infinity;
  for (let i = 0; i < 400; i++) {
    let text = '';
    const parts = 1 + Math.floor(next() * 60);
    for (let j = 0; j < parts; j++) text += alphabet[Math.floor(next() * alphabet.length)];
    const bytes = Buffer.byteLength(text, 'utf8');
    for (const addSpecialTokens of [false, true]) {
      const n = tok.encode(text, { addSpecialTokens }).length;
      const bound = minTokensFor(bytes, m);
      assert.ok(n >= bound, `${JSON.stringify(text)}: ${n} tokens < bound ${bound}`);
      tightest = Math.min(tightest, n / Math.max(1, bound));
    }
  }
  assert.ok(tightest >= 1);
});

t.test('no bound where text can vanish or shrink before the model', { skip }, async () => {
  const base = JSON.parse(readFileSync(join(STORIES_DIR, 'tokenizer.json'), 'utf8')) as Record<string, unknown>;
  assert.ok(maxBytesPerToken(base) !== null);
  const variant = (patch: Record<string, unknown>): number | null => maxBytesPerToken({ ...base, ...patch });
  assert.equal(variant({ normalizer: { type: 'NFKC' } }), null, 'NFKC can shrink');
  assert.equal(variant({ normalizer: { type: 'Lowercase' } }), null, 'lowercasing can shrink (Kelvin sign)');
  assert.equal(variant({ normalizer: { type: 'Replace', pattern: { String: '  ' }, content: ' ' } }), null, 'a shrinking replace');
  assert.equal(variant({ pre_tokenizer: { type: 'WhitespaceSplit' } }), null, 'drops whitespace');
  assert.equal(variant({ pre_tokenizer: { type: 'Split', pattern: { String: ' ' }, behavior: 'Removed' } }), null, 'removes the pattern');
  assert.equal(variant({ added_tokens: [{ id: 0, content: '<mask>', lstrip: true, rstrip: false }] }), null, 'absorbs whitespace');
  const model = base['model'] as Record<string, unknown>;
  assert.equal(variant({ model: { ...model, type: 'WordPiece' } }), null, '[UNK] stands for a whole word');
  assert.equal(variant({ model: { ...model, byte_fallback: false, fuse_unk: true } }), null, 'fused unknowns');
});
