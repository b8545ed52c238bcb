/**
 * The prompt as role-tagged segments (what context compression compresses and
 * what overflow modes cut along). A chat prompt is rendered with the model's
 * template; each message's content is located in the rendered text, and the
 * text is cut there: template scaffolding between contents is 'other', system
 * messages 'system', the last user message 'question', everything else
 * 'context'. Special tokens the tokenizer adds (BOS) are 'other'. The
 * segments' concatenation is the prompt the engine gets.
 *
 * Tokenizing pieces apart can differ from tokenizing the whole text at the
 * seams. The worst case is SentencePiece's dummy prefix ("▁" before every
 * encode call), which would add a token at every seam; so a piece that does
 * not start the text is encoded after an anchor ("\n") whose tokens are then
 * stripped, which reproduces the whole-text tokens wherever the tokenizer's
 * pre-tokenizer splits at the seam (the usual case: role markers end in a
 * newline or a special token).
 */
import type { EngineClient } from '../engine/types.js';
import type { PromptSegment, SegmentRole } from '../policies/compression/types.js';
import type { ChatMessage } from '../model/tokenizer-types.js';

type Tokenizer = Pick<EngineClient, 'tokenize'>;
/** Renders messages with the model's chat template (to the text only). */
type Render = (messages: readonly ChatMessage[]) => Promise<string>;

const ANCHOR = '\n';

function startsWith(ids: readonly number[], prefix: readonly number[]): boolean {
  if (prefix.length > ids.length) return false;
  for (let i = 0; i < prefix.length; i++) if (ids[i] !== prefix[i]) return false;
  return true;
}

/** Special tokens `tokenize(..., {addSpecialTokens: true})` puts before and after a text. */
export async function specialAffixes(engine: Tokenizer): Promise<{ prefix: number[]; suffix: number[] }> {
  const plain = await engine.tokenize('a', { addSpecialTokens: false });
  const withSpecial = await engine.tokenize('a', { addSpecialTokens: true });
  for (let i = 0; i + plain.length <= withSpecial.length; i++) {
    if (startsWith(withSpecial.slice(i), plain)) return { prefix: withSpecial.slice(0, i), suffix: withSpecial.slice(i + plain.length) };
  }
  return { prefix: [], suffix: [] };
}

/** Token ids of a piece of a larger text; `first`: the piece starts that text. */
export async function encodePiece(engine: Tokenizer, text: string, first: boolean): Promise<number[]> {
  if (text === '') return [];
  if (!first) {
    const anchor = await engine.tokenize(ANCHOR, { addSpecialTokens: false });
    const anchored = await engine.tokenize(ANCHOR + text, { addSpecialTokens: false });
    // The anchor merged with the piece's start (e.g. "\n\n"): no clean seam, encode the piece alone.
    if (anchor.length > 0 && startsWith(anchored, anchor)) return anchored.slice(anchor.length);
  }
  return engine.tokenize(text, { addSpecialTokens: false });
}

/** A message's content located in the rendered text: [start, end) character offsets. */
export interface ContentSpan {
  readonly message: number;
  readonly start: number;
  readonly end: number;
}

const MARK_OPEN = '\u{F0000}';
const MARK_CLOSE = '\u{F0001}';

/**
 * Exact spans by rendering the template once more with a marker as each
 * content: valid when putting the real contents back in the markers' places
 * gives the rendered text (a template that trims or rewrites contents fails
 * the check). Null when it does not apply.
 */
async function spansByMarkers(render: Render, messages: readonly ChatMessage[], rendered: string): Promise<ContentSpan[] | null> {
  let marked: string;
  try {
    marked = await render(messages.map((m, i) => ({ ...m, content: `${MARK_OPEN}${i}${MARK_CLOSE}` })));
  } catch {
    return null;
  }
  const spans: ContentSpan[] = [];
  let rebuilt = '';
  let cursor = 0;
  for (let i = 0; i < messages.length; i++) {
    const mark = `${MARK_OPEN}${i}${MARK_CLOSE}`;
    const at = marked.indexOf(mark, cursor);
    if (at < 0) return null;
    rebuilt += marked.slice(cursor, at);
    const content = messages[i]?.content ?? '';
    spans.push({ message: i, start: rebuilt.length, end: rebuilt.length + content.length });
    rebuilt += content;
    cursor = at + mark.length;
  }
  rebuilt += marked.slice(cursor);
  return rebuilt === rendered ? spans : null;
}

/** Spans by searching each content (then its trimmed form) in order; a content not found stays scaffolding. */
function spansBySearch(messages: readonly ChatMessage[], rendered: string): ContentSpan[] {
  const spans: ContentSpan[] = [];
  let cursor = 0;
  messages.forEach((m, i) => {
    for (const content of [m.content, m.content.trim()]) {
      if (content === '') continue;
      const at = rendered.indexOf(content, cursor);
      if (at < 0) continue;
      spans.push({ message: i, start: at, end: at + content.length });
      cursor = at + content.length;
      return;
    }
  });
  return spans;
}

export async function locateContents(render: Render, messages: readonly ChatMessage[], rendered: string): Promise<ContentSpan[]> {
  return (await spansByMarkers(render, messages, rendered)) ?? spansBySearch(messages, rendered);
}

/** system -> 'system', the last user message -> 'question', other messages -> 'context'. */
export function messageRoles(messages: readonly ChatMessage[]): SegmentRole[] {
  let lastUser = -1;
  messages.forEach((m, i) => {
    if (m.role === 'user') lastUser = i;
  });
  return messages.map((m, i) => (m.role === 'system' ? 'system' : i === lastUser ? 'question' : 'context'));
}

/** Appends a piece, merged into the last segment when it has the same role (BOS and the first role marker are one 'other'). */
function push(out: PromptSegment[], role: SegmentRole, tokens: readonly number[]): void {
  if (tokens.length === 0) return;
  const last = out[out.length - 1];
  if (last !== undefined && last.role === role) out[out.length - 1] = { role, tokens: [...last.tokens, ...tokens] };
  else out.push({ role, tokens });
}

/** A rendered chat prompt as segments (see the file comment). */
export async function chatSegments(
  engine: Tokenizer,
  render: Render,
  messages: readonly ChatMessage[],
  rendered: { readonly text: string; readonly addSpecialTokens: boolean },
): Promise<PromptSegment[]> {
  const roles = messageRoles(messages);
  const spans = await locateContents(render, messages, rendered.text);
  const affixes = rendered.addSpecialTokens ? await specialAffixes(engine) : { prefix: [], suffix: [] };
  const out: PromptSegment[] = [];
  push(out, 'other', affixes.prefix);
  let cursor = 0;
  for (const span of spans) {
    if (span.start === span.end) continue;
    push(out, 'other', await encodePiece(engine, rendered.text.slice(cursor, span.start), cursor === 0));
    push(out, roles[span.message] ?? 'context', await encodePiece(engine, rendered.text.slice(span.start, span.end), span.start === 0));
    cursor = span.end;
  }
  push(out, 'other', await encodePiece(engine, rendered.text.slice(cursor), cursor === 0));
  push(out, 'other', affixes.suffix);
  return out;
}

/** A completion prompt (already tokenized): the tokenizer's special prefix and suffix as 'other', the rest one 'context' segment. */
export async function completionSegments(engine: Tokenizer, tokens: readonly number[]): Promise<PromptSegment[]> {
  const { prefix, suffix } = await specialAffixes(engine);
  const head = prefix.length > 0 && startsWith(tokens, prefix) ? prefix.length : 0;
  const tail =
    suffix.length > 0 && tokens.length - head >= suffix.length && startsWith(tokens.slice(tokens.length - suffix.length), suffix) ? suffix.length : 0;
  const out: PromptSegment[] = [];
  push(out, 'other', tokens.slice(0, head));
  push(out, 'context', tokens.slice(head, tokens.length - tail));
  push(out, 'other', tokens.slice(tokens.length - tail));
  return out;
}

export function concatSegments(segments: readonly PromptSegment[]): number[] {
  const out: number[] = [];
  for (const s of segments) for (const t of s.tokens) out.push(t);
  return out;
}
