/**
 * Tool calling on chat completions: `tools`, `tool_choice`, `parallel_tool_calls`.
 *
 * - Prompt: a chat template that renders `tools` gets them (as transformers'
 *   apply_chat_template passes them), with assistant `tool_calls` (arguments as
 *   objects) and `tool` turns in the history. A template that ignores tools (the
 *   plain fallback templates, stories260K) gets them described in a system
 *   message in the call format (Hermes unless model.toolCallFormat says otherwise), as Ollama and vLLM do, and history turns
 *   spelled out in that format.
 * - Output: `required` and a named function are grammars (tool-grammar.ts):
 *   the model can only write a well-formed call to a listed function whose
 *   arguments validate against its parameters. `auto` is a grammar too: text
 *   is free, but a call the model opens is constrained the same way, so it is
 *   always valid. `none` leaves tools out of the prompt.
 * - Parsing: Hermes / Qwen `<tool_call>{json}</tool_call>`, Llama 3 JSON
 *   (`{"name", "parameters"}`), Mistral `[TOOL_CALLS] [...]`; the format is
 *   the template's (model/chat-template.ts detectToolFormat), Hermes without one.
 */
import { randomBytes } from 'node:crypto';
import type { ModelCard } from '../engine/types.js';
import type { ChatMessage, ToolCallFormat } from '../model/tokenizer-types.js';
import { ApiError } from './errors.js';
import type { OutputConstraint } from './structured-output.js';
import { autoCallGrammar, forcedCallGrammar, HERMES_OPEN } from './tool-grammar.js';

const HERMES_CLOSE = '</tool_call>';

export interface WireTool {
  readonly type: 'function';
  readonly function: {
    readonly name: string;
    readonly description?: string | null;
    readonly parameters?: Record<string, unknown> | null;
    readonly strict?: boolean | null;
  };
}
export type WireToolChoice = 'none' | 'auto' | 'required' | { readonly type: 'function'; readonly function: { readonly name: string } };

export interface ToolsSetup {
  readonly tools: readonly WireTool[];
  /** 'auto', 'required', or the one function that must be called. */
  readonly choice: 'auto' | 'required' | { readonly name: string };
  readonly parallel: boolean;
  readonly format: ToolCallFormat;
  /** The chat template renders `tools` itself; otherwise a system message describes them. */
  readonly native: boolean;
}

export interface ParsedToolCall {
  readonly id: string;
  readonly name: string;
  /** The arguments as a JSON string, as OpenAI returns them. */
  readonly arguments: string;
}

const NAME = /^[a-zA-Z0-9_-]{1,64}$/;

/** Checks tools and tool_choice; null when the request has no tools or tool_choice is 'none'. */
export function toolsSetup(
  body: { readonly tools?: readonly WireTool[] | null; readonly tool_choice?: WireToolChoice | null; readonly parallel_tool_calls?: boolean | null },
  card: ModelCard,
  /** model.toolCallFormat: overrides the template's format; null keeps it. */
  formatOverride: ToolCallFormat | null = null,
): ToolsSetup | null {
  const tools = body.tools ?? [];
  const choice = body.tool_choice ?? (tools.length > 0 ? 'auto' : 'none');
  if (tools.length === 0) {
    if (choice !== 'none' && body.tool_choice !== undefined && body.tool_choice !== null) {
      throw new ApiError('invalid_request', "'tool_choice' is only allowed when 'tools' are specified.", { param: 'tool_choice' });
    }
    return null;
  }
  const names = new Set<string>();
  tools.forEach((t, i) => {
    if (!NAME.test(t.function.name))
      throw new ApiError('invalid_request', `Invalid 'tools[${i}].function.name': 1 to 64 letters, digits, '_' or '-'.`, {
        param: `tools[${i}].function.name`,
      });
    if (names.has(t.function.name))
      throw new ApiError('invalid_request', `Duplicate function name '${t.function.name}' in 'tools'.`, { param: `tools[${i}].function.name` });
    names.add(t.function.name);
  });
  if (choice === 'none') return null;
  let resolved: ToolsSetup['choice'];
  if (typeof choice === 'string') resolved = choice;
  else {
    if (!names.has(choice.function.name)) {
      throw new ApiError('invalid_request', `'tool_choice' names the function '${choice.function.name}', which is not in 'tools'.`, {
        param: 'tool_choice.function.name',
      });
    }
    resolved = { name: choice.function.name };
  }
  const format = card.toolCallFormat ?? null;
  const setup: ToolsSetup = {
    tools,
    choice: resolved,
    parallel: body.parallel_tool_calls ?? true,
    format: formatOverride ?? format ?? 'hermes',
    native: format !== null,
  };
  // Compile every function's parameters now, so an unsupported schema is a 400 whatever tool_choice says.
  forcedCallGrammar(
    setup,
    tools.map((t) => t.function.name),
  );
  return setup;
}

/** The grammar for `required` / a named function: only well-formed calls whose arguments match the parameters. */
export function toolsConstraint(setup: ToolsSetup): OutputConstraint | null {
  if (setup.choice === 'auto') return null;
  const t0 = performance.now();
  const names = setup.choice === 'required' ? setup.tools.map((t) => t.function.name) : [setup.choice.name];
  const grammar = forcedCallGrammar(setup, names);
  return { type: 'tool_calls', name: setup.choice === 'required' ? null : setup.choice.name, grammar, compileMs: performance.now() - t0 };
}

/**
 * `auto`: free text, or calls that are valid once the model opens one
 * (tool-grammar.ts); `text` (response_format or a pattern) replaces the free
 * text. Null for forced choices (toolsConstraint's).
 */
export function autoToolsConstraint(setup: ToolsSetup, text: OutputConstraint | null): OutputConstraint | null {
  if (setup.choice !== 'auto') return null;
  const t0 = performance.now();
  const grammar = autoCallGrammar(setup, text?.grammar ?? null);
  return { type: 'tools_auto', name: text?.name ?? null, grammar, compileMs: (text?.compileMs ?? 0) + performance.now() - t0 };
}

/**
 * What the model is told when its template does not render tools: the
 * functions, one JSON line each, and the Hermes call format. Short on purpose
 * (small models have small windows); the grammar, not the wording, is what
 * makes forced calls well-formed.
 */
export function toolsSystemText(setup: ToolsSetup): string {
  const lines = setup.tools.map((t) =>
    JSON.stringify({
      name: t.function.name,
      ...(t.function.description ? { description: t.function.description } : {}),
      parameters: t.function.parameters ?? {},
    }),
  );
  const how =
    setup.format === 'hermes'
      ? '<tool_call>{"name": <name>, "arguments": <json>}</tool_call>'
      : setup.format === 'llama3'
        ? 'with only {"name": <name>, "parameters": <json>}'
        : 'with only [{"name": <name>, "arguments": <json>}]';
  return ['Functions you can call:', ...lines, `To call one, reply ${how}`].join('\n');
}

function parseArguments(raw: unknown, param: string): unknown {
  if (typeof raw !== 'string') return raw;
  try {
    return JSON.parse(raw);
  } catch {
    throw new ApiError('invalid_request', `'${param}' must be a JSON string.`, { param });
  }
}

/** A call as the model wrote it in this format (used for history turns in the prompt). */
export function formatCall(format: ToolCallFormat, name: string, args: unknown): string {
  const json = JSON.stringify({ name, [format === 'llama3' ? 'parameters' : 'arguments']: args });
  if (format === 'hermes') return `<tool_call>\n${json}\n</tool_call>`;
  if (format === 'mistral') return `[TOOL_CALLS] [${json}]`;
  return json;
}

export interface WireToolCall {
  readonly id: string;
  readonly type: 'function';
  /** A JSON string on the wire; an object when a caller already parsed it. */
  readonly function: { readonly name: string; readonly arguments: unknown };
}

/**
 * History for the template: natively, assistant tool_calls (arguments parsed)
 * and tool turns as they are; otherwise spelled out in the call format (Hermes by default)
 * (calls in the assistant text, results as a user turn in <tool_response>).
 * Without any tool setup, tool turns still render that way.
 */
export function historyMessages(
  messages: readonly {
    readonly role: ChatMessage['role'];
    readonly content: string;
    readonly toolCalls: readonly WireToolCall[] | null;
    readonly toolCallId: string | null;
    readonly index: number;
  }[],
  setup: ToolsSetup | null,
): ChatMessage[] {
  const native = setup?.native === true;
  const out: ChatMessage[] = [];
  const names = new Map<string, string>();
  for (const m of messages) {
    if (m.role === 'assistant' && m.toolCalls !== null && m.toolCalls.length > 0) {
      const calls = m.toolCalls.map((c, j) => {
        names.set(c.id, c.function.name);
        return {
          id: c.id,
          type: 'function' as const,
          function: { name: c.function.name, arguments: parseArguments(c.function.arguments, `messages[${m.index}].tool_calls[${j}].function.arguments`) },
        };
      });
      if (native) out.push({ role: 'assistant', content: m.content, tool_calls: calls });
      else {
        const text = calls.map((c) => formatCall(setup?.format ?? 'hermes', c.function.name, c.function.arguments)).join('\n');
        out.push({ role: 'assistant', content: m.content === '' ? text : `${m.content}\n${text}` });
      }
      continue;
    }
    if (m.role === 'tool') {
      const name = m.toolCallId === null ? undefined : names.get(m.toolCallId);
      if (native)
        out.push({
          role: 'tool',
          content: m.content,
          ...(m.toolCallId !== null ? { tool_call_id: m.toolCallId } : {}),
          ...(name !== undefined ? { name } : {}),
        });
      else out.push({ role: 'user', content: `<tool_response>\n${m.content}\n</tool_response>` });
      continue;
    }
    out.push({ role: m.role, content: m.content });
  }
  if (setup !== null && !native) {
    const preamble = toolsSystemText(setup);
    const first = out[0];
    if (first?.role === 'system') out[0] = { role: 'system', content: `${first.content}\n\n${preamble}` };
    else out.unshift({ role: 'system', content: preamble });
  }
  return out;
}

export function newCallId(): string {
  return `call_${randomBytes(12).toString('base64url')}`;
}

function callFrom(value: unknown, argsKeys: readonly string[]): ParsedToolCall | null {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return null;
  const v = value as Record<string, unknown>;
  if (typeof v['name'] !== 'string') return null;
  let args: unknown = {};
  for (const k of argsKeys) if (k in v) args = v[k];
  return { id: newCallId(), name: v['name'], arguments: typeof args === 'string' ? args : JSON.stringify(args ?? {}) };
}

function tryJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** Splits a finished output into text content and tool calls, in the given format. */
export function parseToolCalls(text: string, format: ToolCallFormat): { content: string | null; calls: ParsedToolCall[] } {
  const calls: ParsedToolCall[] = [];
  let content = text;
  if (format === 'hermes') {
    content = '';
    let i = 0;
    for (;;) {
      const at = text.indexOf(HERMES_OPEN, i);
      if (at < 0) break;
      const body = at + HERMES_OPEN.length;
      const close = closingTagAt(text, body);
      const end = close < 0 ? text.length : close + HERMES_CLOSE.length;
      const call = callFrom(tryJson(text.slice(body, close < 0 ? text.length : close)), ['arguments', 'parameters']);
      content += text.slice(i, call === null ? end : at);
      if (call !== null) calls.push(call);
      i = end;
    }
    content += text.slice(i);
  } else {
    let body = text.trim();
    const marker = format === 'mistral' ? '[TOOL_CALLS]' : '<|python_tag|>';
    const at = body.indexOf(marker);
    const before = at >= 0 ? body.slice(0, at) : '';
    if (at >= 0) body = body.slice(at + marker.length).trim();
    const parsed = tryJson(body) ?? (format === 'llama3' ? tryJson(`[${body.split(/;\s*(?=\{)/).join(',')}]`) : undefined);
    const list = Array.isArray(parsed) ? parsed : parsed === undefined ? [] : [parsed];
    const found = list.map((v) => callFrom(v, ['arguments', 'parameters']));
    if (found.length > 0 && found.every((c) => c !== null)) {
      calls.push(...found);
      content = before;
    }
  }
  const trimmed = content.trim();
  return { content: calls.length === 0 ? text : trimmed === '' ? null : trimmed, calls };
}

/**
 * Streams a choice's text with tool calls cut out: content is released as it
 * comes except what could be the start of a call (held until it is known),
 * and each call is released whole once its closing tag (Hermes) or the end
 * (Llama 3, Mistral: a call is the whole output) is reached.
 */
export class ToolCallStream {
  private buffer = '';
  private inCall = false;
  /** Llama 3 / Mistral: the output looks like a call so far, so hold everything to the end. */
  private holdAll = false;
  private sawText = false;
  calls = 0;

  constructor(private readonly format: ToolCallFormat) {}

  push(text: string): { content: string; calls: ParsedToolCall[] } {
    this.buffer += text;
    if (this.format !== 'hermes') return this.pushWhole();
    const out = { content: '', calls: [] as ParsedToolCall[] };
    for (;;) {
      if (!this.inCall) {
        const at = this.buffer.indexOf('<tool_call>');
        if (at >= 0) {
          out.content += this.buffer.slice(0, at);
          this.buffer = this.buffer.slice(at);
          this.inCall = true;
          continue;
        }
        // Keep a tail that may be the start of '<tool_call>'.
        const keep = partialSuffix(this.buffer, '<tool_call>');
        out.content += this.buffer.slice(0, this.buffer.length - keep);
        this.buffer = this.buffer.slice(this.buffer.length - keep);
        return out;
      }
      const end = closingTagAt(this.buffer, HERMES_OPEN.length);
      if (end < 0) return out;
      const block = this.buffer.slice(0, end + HERMES_CLOSE.length);
      this.buffer = this.buffer.slice(block.length);
      this.inCall = false;
      const parsed = parseToolCalls(block, 'hermes');
      if (parsed.calls.length > 0) {
        out.calls.push(...parsed.calls);
        this.calls += parsed.calls.length;
      } else out.content += block;
    }
  }

  private pushWhole(): { content: string; calls: ParsedToolCall[] } {
    if (!this.sawText) {
      const head = this.buffer.trimStart();
      if (head === '') return { content: '', calls: [] };
      this.sawText = true;
      this.holdAll = head.startsWith('{') || head.startsWith('[') || '[TOOL_CALLS]'.startsWith(head.slice(0, 12)) || head.startsWith('<|python_tag|>');
    }
    if (this.holdAll) return { content: '', calls: [] };
    const content = this.buffer;
    this.buffer = '';
    return { content, calls: [] };
  }

  /** The end of the output: what is still held, as content or calls. */
  flush(): { content: string; calls: ParsedToolCall[] } {
    const rest = this.buffer;
    this.buffer = '';
    if (rest === '') return { content: '', calls: [] };
    const parsed = parseToolCalls(rest, this.format);
    this.calls += parsed.calls.length;
    return { content: parsed.calls.length > 0 ? (parsed.content ?? '') : rest, calls: parsed.calls };
  }
}

/**
 * Where the call opened before `from` closes: the first `</tool_call>` that is
 * not inside a JSON string (an argument may contain the tag), or -1.
 */
function closingTagAt(text: string, from: number): number {
  let inString = false;
  for (let i = from; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (c === '\\') i++;
      else if (c === '"') inString = false;
    } else if (c === '"') inString = true;
    else if (c === '<' && text.startsWith(HERMES_CLOSE, i)) return i;
  }
  return -1;
}

/** Length of the longest suffix of `text` that is a proper prefix of `tag`. */
function partialSuffix(text: string, tag: string): number {
  for (let n = Math.min(tag.length - 1, text.length); n > 0; n--) if (tag.startsWith(text.slice(text.length - n))) return n;
  return 0;
}

/** OpenAI's tool_calls array of a message. */
export function wireToolCalls(calls: readonly ParsedToolCall[]): { id: string; type: 'function'; function: { name: string; arguments: string } }[] {
  return calls.map((c) => ({ id: c.id, type: 'function', function: { name: c.name, arguments: c.arguments } }));
}
