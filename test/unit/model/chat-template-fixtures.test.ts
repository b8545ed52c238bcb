/**
 * The real Llama 3 and Qwen3 chat templates (../shared/tokenizers) render exactly as transformers'
 * apply_chat_template does: expected strings computed once by tools/fixtures/chat-templates.py
 * (Jinja2 configured as transformers configures it) and committed in test/fixtures/chat-templates.
 * Cases: system + user, multi-turn with and without the generation prompt, tools, and a tool-call
 * round trip (assistant tool_calls, a tool turn).
 */
import t from 'tap';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { loadChatTemplate } from '../../../src/model/chat-template.js';
import type { ChatMessage } from '../../../src/model/tokenizer-types.js';
import { MISSING_SHARED, sharedPath } from './fixtures.js';

interface FixtureCase {
  readonly name: string;
  readonly messages: ChatMessage[];
  readonly add_generation_prompt: boolean;
  readonly tools?: unknown[];
  readonly expected: string | null;
}

for (const family of ['llama3', 'qwen3'] as const) {
  const fixture = JSON.parse(readFileSync(resolve('test/fixtures/chat-templates', `${family}.json`), 'utf8')) as { readonly cases: readonly FixtureCase[] };
  for (const c of fixture.cases) {
    t.test(`${family} ${c.name}: renders as transformers does`, async (t) => {
      const dir = sharedPath('tokenizers', family);
      if (dir === null) return t.plan(0, MISSING_SHARED);
      const tpl = loadChatTemplate(dir);
      assert.ok(tpl !== null);
      assert.ok(c.expected !== null, 'the fixture has an expected render');
      const got = tpl.render(c.messages, { addGenerationPrompt: c.add_generation_prompt, ...(c.tools ? { tools: c.tools } : {}) });
      assert.equal(got, c.expected);
    });
  }
}
