/**
 * capserve's text-pattern constraints, under vLLM's request names (extra body
 * fields, as vLLM takes them): `structured_outputs: {regex | grammar | choice}`
 * (vLLM >= 0.10) and the older top-level `guided_regex`, `guided_grammar`,
 * `guided_choice`. A regex must match the whole output; a grammar is GBNF
 * (llama.cpp's format, start rule `root`); a choice list allows exactly one of
 * its strings. JSON goes through `response_format` (OpenAI's field), so
 * `guided_json` and `structured_outputs.json` stay unsupported.
 *
 * Compiled here, once per request: a bad pattern is a 400 naming the field and
 * the position (offset for a regex, line and column for a grammar).
 */
import { grammarFromGbnf, lineColumn } from '../engine/grammar/gbnf.js';
import type { Grammar } from '../engine/grammar/grammar.js';
import { compilePattern, PatternError, type PatternNode } from '../engine/grammar/pattern.js';
import { grammarFromRegex } from '../engine/grammar/regex.js';
import { ApiError } from './errors.js';
import type { OutputConstraint } from './structured-output.js';
import { autoToolsConstraint, toolsConstraint, type ToolsSetup } from './tools.js';

export interface GuidedFields {
  readonly structured_outputs?: { readonly regex?: string | null; readonly grammar?: string | null; readonly choice?: readonly string[] | null } | null;
  readonly guided_regex?: string | null;
  readonly guided_grammar?: string | null;
  readonly guided_choice?: readonly string[] | null;
}

type Kind = 'regex' | 'grammar' | 'choice';

/** The request's pattern constraint, or null; a 400 for two at once or an invalid pattern. */
export function guidedConstraint(body: GuidedFields): OutputConstraint | null {
  const found: { kind: Kind; param: string; value: string | readonly string[] }[] = [];
  const so = body.structured_outputs ?? null;
  const add = (kind: Kind, param: string, value: string | readonly string[] | null | undefined): void => {
    if (value !== null && value !== undefined) found.push({ kind, param, value });
  };
  add('regex', 'structured_outputs.regex', so?.regex);
  add('grammar', 'structured_outputs.grammar', so?.grammar);
  add('choice', 'structured_outputs.choice', so?.choice);
  add('regex', 'guided_regex', body.guided_regex);
  add('grammar', 'guided_grammar', body.guided_grammar);
  add('choice', 'guided_choice', body.guided_choice);
  if (found.length > 1) {
    throw new ApiError('invalid_request', `Only one structured output constraint per request: '${found[0]?.param}' and '${found[1]?.param}' were both given.`, {
      param: found[1]?.param ?? null,
    });
  }
  const one = found[0];
  if (one === undefined) return null;
  const t0 = performance.now();
  const grammar = compileGuided(one.kind, one.param, one.value);
  return { type: one.kind, name: null, grammar, compileMs: performance.now() - t0 };
}

/**
 * The one grammar a request's output follows: a forced tool call; else, with
 * tools on `auto`, calls around the text constraint; else the text constraint
 * (a pattern, or `format` from response_format / text.format: not both).
 */
export function requestConstraint(body: GuidedFields, format: OutputConstraint | null, formatParam: string, tools: ToolsSetup | null): OutputConstraint | null {
  const guided = guidedConstraint(body);
  if (guided !== null && format !== null) {
    throw new ApiError('invalid_request', `A ${guided.type} constraint cannot be combined with '${formatParam}' (the output follows one grammar).`, {
      param: formatParam,
    });
  }
  const text = guided ?? format;
  if (tools === null) return text;
  return toolsConstraint(tools) ?? autoToolsConstraint(tools, text);
}

function compileGuided(kind: Kind, param: string, value: string | readonly string[]): Grammar {
  try {
    if (kind === 'choice') {
      const list = value as readonly string[];
      if (list.length === 0) throw new ApiError('invalid_request', `'${param}' must list at least one string.`, { param });
      const node: PatternNode = { kind: 'alt', items: list.map((text) => ({ kind: 'literal', text })) };
      return compilePattern(new Map([['root', node]]), 'root');
    }
    const text = value as string;
    return kind === 'regex' ? grammarFromRegex(text) : grammarFromGbnf(text);
  } catch (err) {
    if (err instanceof PatternError) {
      const text = typeof value === 'string' ? value : '';
      const where = kind === 'grammar' ? `line ${lineColumn(text, err.offset).line}, column ${lineColumn(text, err.offset).column}` : `position ${err.offset}`;
      const what = kind === 'regex' ? 'regex' : kind === 'grammar' ? 'grammar' : 'choice list';
      throw new ApiError('invalid_request', `Invalid ${what} for '${param}' at ${where}: ${err.reason}.`, { param });
    }
    if (err instanceof RangeError) throw new ApiError('invalid_request', `Invalid ${kind} for '${param}': ${err.message}.`, { param });
    throw err;
  }
}
