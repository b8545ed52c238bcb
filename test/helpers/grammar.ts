/** Helpers the grammar tests share: reading a token mask, and walking a text through an automaton's masks byte by byte. */
import { DEAD, type GrammarAutomaton } from '../../src/engine/grammar/automaton.js';

/** Whether token `id` is allowed by `mask` (one bit per token). */
export function allowed(mask: Uint32Array, id: number): boolean {
  return ((mask[id >>> 5] ?? 0) & (1 << (id & 31))) !== 0;
}

/** True when the text is reachable byte by byte through the masks (each byte's own token allowed) and complete at the end. */
export function accepts(a: GrammarAutomaton, text: string): boolean {
  let s = a.initial;
  for (const b of Buffer.from(text, 'utf8')) {
    if (!allowed(a.mask(s, Infinity), b)) return false;
    s = a.step(s, b);
    if (s === DEAD) return false;
  }
  return a.accepting(s);
}
