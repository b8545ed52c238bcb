/**
 * Tool calls as byte grammars (engine/grammar/), per call format:
 *
 * - forcedCallGrammar (`required`, a named function): the output is only
 *   well-formed calls to the allowed functions, arguments valid against each
 *   function's parameters.
 * - autoCallGrammar (`auto`), as llguidance / XGrammar structural tags do it:
 *   the model writes freely until it writes the format's call opener; from
 *   there the call is constrained exactly as a forced one, so a started call
 *   is always valid. Hermes: free text is any bytes not containing
 *   `<tool_call>` (a KMP automaton over the opener, one rule per matched
 *   prefix); the opener starts a call; after the call, more text and calls
 *   when parallel calls are allowed, the end otherwise. Llama 3 and Mistral,
 *   whose call is the whole output: either calls, or text that does not open
 *   with `{` / `[` (after whitespace). A text constraint (response_format,
 *   regex, grammar) given with `auto` replaces the free text: the output is
 *   then calls or a document of that constraint.
 */
import { type Alternative, bytesOf, type Element, type Grammar, GrammarBuilder, ref, set } from '../engine/grammar/grammar.js';
import { JsonGrammar, SchemaError } from '../engine/grammar/json-schema.js';
import { ApiError } from './errors.js';
import type { ToolsSetup } from './tools.js';

export const HERMES_OPEN = '<tool_call>';

/** `required` / a named function. */
export function forcedCallGrammar(setup: ToolsSetup, names: readonly string[]): Grammar {
  const b = new GrammarBuilder();
  const root = b.reserve();
  const call = callRule(b, setup, names);
  b.define(root, [[ref(forcedCalls(b, setup, call))]]);
  return b.build(root);
}

/** `auto`: free text (or `text`'s documents), or calls that are valid once started. */
export function autoCallGrammar(setup: ToolsSetup, text: Grammar | null): Grammar {
  const b = new GrammarBuilder();
  const root = b.reserve();
  const names = setup.tools.map((t) => t.function.name);
  const call = callRule(b, setup, names);
  if (text !== null) {
    b.define(root, [[ref(forcedCalls(b, setup, call))], [ref(b.embed(text))]]);
    return b.build(root);
  }
  if (setup.format === 'hermes') {
    b.define(root, [[ref(hermesAuto(b, setup, call))]]);
    return b.build(root);
  }
  // Whitespace, then either nothing or a first byte that does not open a call, then anything.
  const anyByte = set(0, 255);
  const rest = b.reserve();
  b.define(rest, [[], [anyByte, ref(rest)]]);
  const ws = b.reserve();
  const plain = set(0x00, 0x08, 0x0b, 0x0c, 0x0e, 0x1f, 0x21, 0x5a, 0x5c, 0x7a, 0x7c, 0xff);
  b.define(ws, [[], [set(0x09, 0x0a, 0x0d, 0x0d, 0x20, 0x20), ref(ws)], [plain, ref(rest)]]);
  b.define(root, [[ref(forcedCalls(b, setup, call))], [ref(ws)]]);
  return b.build(root);
}

function callRule(b: GrammarBuilder, setup: ToolsSetup, names: readonly string[]): number {
  const argsKey = setup.format === 'llama3' ? 'parameters' : 'arguments';
  const bodies: Alternative[] = names.map((name) => {
    const i = setup.tools.findIndex((t) => t.function.name === name);
    const params = setup.tools[i]?.function.parameters ?? { type: 'object', properties: {} };
    const param = `tools[${i}].function.parameters`;
    let args: number;
    try {
      args = new JsonGrammar(b, params).schema(params, '');
    } catch (err) {
      if (err instanceof SchemaError)
        throw new ApiError('invalid_request', `Invalid schema for ${param}: ${err.message}.`, { param: err.path === '' ? param : `${param}.${err.path}` });
      throw err;
    }
    return [...bytesOf(`{"name": ${JSON.stringify(name)}, "${argsKey}": `), ref(args), ...bytesOf('}')];
  });
  return b.rule(bodies);
}

/** One or (parallel) several calls, in the format's framing. */
function forcedCalls(b: GrammarBuilder, setup: ToolsSetup, call: number): number {
  const many = setup.parallel;
  switch (setup.format) {
    case 'hermes': {
      const tagged = b.rule([[...bytesOf(`${HERMES_OPEN}\n`), ref(call), ...bytesOf('\n</tool_call>')]]);
      if (!many) return tagged;
      const more = b.reserve();
      b.define(more, [[], [...bytesOf('\n'), ref(tagged), ref(more)]]);
      return b.rule([[ref(tagged), ref(more)]]);
    }
    case 'llama3': {
      if (!many) return call;
      const more = b.reserve();
      b.define(more, [[], [...bytesOf('; '), ref(call), ref(more)]]);
      return b.rule([[ref(call), ref(more)]]);
    }
    case 'mistral': {
      const more = b.reserve();
      b.define(more, many ? [[...bytesOf(']')], [...bytesOf(', '), ref(call), ref(more)]] : [[...bytesOf(']')]]);
      return b.rule([[...bytesOf('['), ref(call), ref(more)]]);
    }
  }
}

/**
 * Hermes `auto`: text[k] is "k bytes of the opener matched"; a byte that
 * completes the opener enters the call. KMP's failure function gives the
 * state after a mismatch, so text containing the opener anywhere is a call.
 */
function hermesAuto(b: GrammarBuilder, setup: ToolsSetup, call: number): number {
  const open = Buffer.from(HERMES_OPEN, 'utf8');
  const n = open.length;
  const fail = new Int32Array(n);
  for (let i = 1, k = 0; i < n; i++) {
    while (k > 0 && open[i] !== open[k]) k = fail[k - 1] ?? 0;
    if (open[i] === open[k]) k++;
    fail[i] = k;
  }
  const next = (k: number, byte: number): number => {
    let j = k;
    while (j > 0 && open[j] !== byte) j = fail[j - 1] ?? 0;
    return open[j] === byte ? j + 1 : 0;
  };
  const text: number[] = [];
  for (let k = 0; k < n; k++) text.push(b.reserve());
  // After the opener: the call's body and closing tag, then (parallel) free text again, or the end.
  const after = b.rule([[...bytesOf('\n'), ref(call), ...bytesOf('\n</tool_call>'), ...(setup.parallel ? [ref(text[0] ?? 0)] : [])]]);
  for (let k = 0; k < n; k++) {
    const byTarget = new Map<number, number[]>();
    for (let byte = 0; byte < 256; byte++) {
      const to = next(k, byte);
      const list = byTarget.get(to) ?? [];
      list.push(byte);
      byTarget.set(to, list);
    }
    const alts: Alternative[] = [[]];
    for (const [to, bytes] of byTarget) {
      const el: Element = set(...ranges(bytes));
      alts.push([el, ref(to === n ? after : (text[to] ?? 0))]);
    }
    b.define(text[k] ?? 0, alts);
  }
  return text[0] ?? 0;
}

/** Sorted bytes as [lo, hi] pairs. */
function ranges(bytes: readonly number[]): number[] {
  const out: number[] = [];
  for (const x of bytes) {
    const last = out.length - 1;
    if (last > 0 && out[last] === x - 1) out[last] = x;
    else out.push(x, x);
  }
  return out;
}
