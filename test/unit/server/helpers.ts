import type { FastifyInstance } from 'fastify';
import { loadConfig, parseOverride } from '../../../src/config/load-config.js';
import { buildApp } from '../../../src/server/app.js';
import { ScriptedEngine, type ScriptedEngineOptions } from './scripted-engine.js';

/** Builds the app over a scripted engine; `sets` are `--set` style overrides. */
export function makeApp(
  t: { after: (fn: () => Promise<void>) => void },
  engineOptions: ScriptedEngineOptions = {},
  sets: readonly string[] = [],
): { app: FastifyInstance; engine: ScriptedEngine } {
  const engine = new ScriptedEngine(engineOptions);
  const app = buildApp({ engine, config: loadConfig({ overrides: sets.map(parseOverride) }) });
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
