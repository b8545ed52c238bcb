/**
 * A small byte-pair-encoding trainer for the generated tokenizer: repeatedly merges
 * the most frequent adjacent pair over a weighted word list. Ties break on the pair's
 * text so the result never depends on Map iteration order.
 */

export type Merge = readonly [string, string];

interface Word {
  symbols: string[];
  readonly count: number;
}

const SEP = '\u0000';

function pairKey(a: string, b: string): string {
  return a + SEP + b;
}

function addPairs(word: Word, counts: Map<string, number>, sign: 1 | -1): void {
  for (let i = 0; i + 1 < word.symbols.length; i++) {
    const key = pairKey(word.symbols[i]!, word.symbols[i + 1]!);
    const next = (counts.get(key) ?? 0) + sign * word.count;
    if (next === 0) counts.delete(key);
    else counts.set(key, next);
  }
}

/**
 * Learns up to maxMerges merges from words (already split into initial symbols),
 * stopping early when every word is a single symbol.
 */
export function trainBpe(corpus: ReadonlyMap<string, { symbols: readonly string[]; count: number }>, maxMerges: number): Merge[] {
  const words: Word[] = [...corpus.values()].map((w) => ({ symbols: [...w.symbols], count: w.count }));
  const counts = new Map<string, number>();
  for (const w of words) addPairs(w, counts, 1);
  const merges: Merge[] = [];
  while (merges.length < maxMerges && counts.size > 0) {
    let bestKey = '';
    let bestCount = 0;
    for (const [key, count] of counts) {
      if (count > bestCount || (count === bestCount && key < bestKey)) {
        bestKey = key;
        bestCount = count;
      }
    }
    const [a, b] = bestKey.split(SEP) as [string, string];
    const merged = a + b;
    for (const w of words) {
      const s = w.symbols;
      let hit = false;
      for (let i = 0; i + 1 < s.length; i++) {
        if (s[i] === a && s[i + 1] === b) {
          hit = true;
          break;
        }
      }
      if (!hit) continue;
      addPairs(w, counts, -1);
      const out: string[] = [];
      for (let i = 0; i < s.length; i++) {
        if (i + 1 < s.length && s[i] === a && s[i + 1] === b) {
          out.push(merged);
          i++;
        } else {
          out.push(s[i]!);
        }
      }
      w.symbols = out;
      addPairs(w, counts, 1);
    }
    merges.push([a, b]);
  }
  return merges;
}
