import type { FastifyInstance } from 'fastify';
import { loadConfig, parseOverride } from '../../../src/config/load-config.js';
import { FULL_POLICY, parsePolicyFile, type Policy } from '../../../src/policies/registry.js';
import { buildApp } from '../../../src/server/app.js';
import { ScriptedEngine, type ScriptedEngineOptions } from './scripted-engine.js';

/**
 * A fixed policy set for wire tests (independent of the shipped policies/ files):
 * full (favours A, C), an eviction policy (C, P) and a sparse one (A, P).
 */
export function testPolicies(): ReadonlyMap<string, Policy> {
  const snapkv = parsePolicyFile('name: snapkv-25\nkind: kv-eviction\nmethod: snapkv\nparams: {budget: 0.25}\n', '<test>/snapkv-25.yaml');
  const h2o = parsePolicyFile('name: h2o\nkind: kv-eviction\nmethod: h2o\nparams: {budget: 0.2}\n', '<test>/h2o.yaml');
  const quest = parsePolicyFile('name: quest\nkind: sparse-attention\nmethod: quest\nparams: {budget: 0.25}\n', '<test>/quest.yaml');
  return new Map([FULL_POLICY, snapkv, h2o, quest].map((p) => [p.name, p]));
}

/** Builds the app over a scripted engine; `sets` are `--set` style overrides. */
export function makeApp(
  t: { after: (fn: () => Promise<void>) => void },
  engineOptions: ScriptedEngineOptions = {},
  sets: readonly string[] = [],
): { app: FastifyInstance; engine: ScriptedEngine } {
  const engine = new ScriptedEngine(engineOptions);
  const app = buildApp({ engine, config: loadConfig({ overrides: sets.map(parseOverride) }), policies: testPolicies() });
  t.after(() => app.close());
  return { app, engine };
}

/**
 * Splits an SSE body into its events, checking the framing on the way: every
 * event is exactly `data: <payload>\n\n`, and the stream ends with [DONE].
 */
export function parseSse(body: string): { events: Record<string, unknown>[]; done: boolean } {
  assert(body.endsWith('\n\n'), 'an SSE body ends with a blank line');
  const blocks = body.slice(0, -2).split('\n\n');
  const events: Record<string, unknown>[] = [];
  let done = false;
  for (const block of blocks) {
    assert(block.startsWith('data: '), `event starts with "data: ": ${JSON.stringify(block.slice(0, 40))}`);
    assert(!block.includes('\n'), 'one line per event');
    const payload = block.slice('data: '.length);
    assert(!done, 'nothing after [DONE]');
    if (payload === '[DONE]') done = true;
    else events.push(JSON.parse(payload) as Record<string, unknown>);
  }
  return { events, done };
}

function assert(condition: boolean, message: string): asserts condition {
  if (!condition) throw new Error(`SSE framing: ${message}`);
}

export const CHAT = (extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  model: 'scripted',
  messages: [{ role: 'user', content: 'hi' }],
  ...extra,
});

/** The cap fields of a request that fit the window under overflow mode `error` and was not compressed. */
export function plainCap(promptTokens: number, maxTokens: number, contextWindow = 256): Record<string, unknown> {
  return {
    original_tokens: null,
    compressed_tokens: null,
    compress_ms: null,
    overflow: {
      mode: 'error',
      applied: false,
      tokens_before: promptTokens,
      tokens_after: promptTokens,
      dropped: 0,
      context_window: contextWindow,
      max_tokens: maxTokens,
    },
  };
}
