import t from 'tap';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { loadChatTemplate } from '../../../src/model/chat-template.js';
import { createModel } from '../../../src/model/create/create-model.js';
import { ChatTemplateRenderError, CheckpointError } from '../../../src/model/errors.js';
import { loadTokenizer } from '../../../src/model/tokenizer.js';
import type { ChatMessage } from '../../../src/model/tokenizer-types.js';
import { MISSING_SHARED, sharedPath, tempDir } from './fixtures.js';

const MESSAGES: ChatMessage[] = [
  { role: 'system', content: 'You are helpful.' },
  { role: 'user', content: 'Hi! ☕' },
];

t.test('llama3 template renders system + user with BOS from tokenizer_config.json', async (t) => {
  const dir = sharedPath('tokenizers', 'llama3');
  if (dir === null) return t.plan(0, MISSING_SHARED);
  const tpl = loadChatTemplate(dir);
  assert.ok(tpl !== null);
  assert.equal(
    tpl.render(MESSAGES, { addGenerationPrompt: true }),
    '<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are helpful.<|eot_id|>' +
      '<|start_header_id|>user<|end_header_id|>\n\nHi! ☕<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n',
  );
  assert.equal(tpl.rendersBos, true);
});

t.test('qwen3 template renders ChatML, opens the assistant turn only when asked, has no BOS', async (t) => {
  const dir = sharedPath('tokenizers', 'qwen3');
  if (dir === null) return t.plan(0, MISSING_SHARED);
  const tpl = loadChatTemplate(dir);
  assert.ok(tpl !== null);
  const body = '<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi! ☕<|im_end|>\n';
  assert.equal(tpl.render(MESSAGES, { addGenerationPrompt: true }), body + '<|im_start|>assistant\n');
  assert.equal(tpl.render(MESSAGES), body);
  assert.equal(tpl.rendersBos, false);
  // The rendered prompt tokenizes to the chat special tokens, not to their spelled-out pieces.
  const tok = loadTokenizer(dir);
  const ids = tok.encode(tpl.render(MESSAGES, { addGenerationPrompt: true }), { addSpecialTokens: false });
  assert.equal(tok.idToPiece(ids[0]!), '<|im_start|>');
});

t.test('stories260K has no chat template; a fallback can be supplied', async (t) => {
  const dir = sharedPath('models', 'stories260K');
  if (dir === null) return t.plan(0, MISSING_SHARED);
  assert.equal(loadChatTemplate(dir), null);
  const tpl = loadChatTemplate(dir, '{{ bos_token }}{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}');
  assert.ok(tpl !== null);
  // bos_token comes from tokenizer_config.json even for a fallback template.
  assert.equal(tpl.render(MESSAGES), '<s>system: You are helpful.\nuser: Hi! ☕\n');
  assert.equal(tpl.rendersBos, true);
});

function configDir(config: Record<string, unknown>): string {
  const dir = tempDir('chat');
  fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify(config));
  return dir;
}

t.test('template list picks "default"; AddedToken-style bos objects are unwrapped', async () => {
  const dir = configDir({
    bos_token: { content: '<BOS>', lstrip: false },
    eos_token: '<EOS>',
    chat_template: [
      { name: 'tool_use', template: 'TOOLS' },
      { name: 'default', template: '{{ bos_token }}{{ messages[0].content }}{{ eos_token }}' },
    ],
  });
  const tpl = loadChatTemplate(dir);
  assert.ok(tpl !== null);
  assert.equal(tpl.render([{ role: 'user', content: 'x' }]), '<BOS>x<EOS>');
  assert.equal(tpl.rendersBos, true);
});

t.test('chat_template.jinja next to the config takes precedence', async () => {
  const dir = configDir({ chat_template: 'FROM CONFIG' });
  fs.writeFileSync(path.join(dir, 'chat_template.jinja'), 'FROM FILE {{ messages | length }}');
  assert.equal(loadChatTemplate(dir)?.render(MESSAGES), 'FROM FILE 2');
});

t.test('a template that does not parse is a bad_chat_template naming the file', async () => {
  const dir = configDir({ chat_template: '{% for m in messages %}{{ m.content }' });
  assert.throws(
    () => loadChatTemplate(dir),
    (e: unknown) => e instanceof CheckpointError && e.code === 'bad_chat_template' && e.message.includes('tokenizer_config.json'),
  );
});

t.test('raise_exception in a template becomes a ChatTemplateRenderError', async () => {
  const dir = configDir({
    chat_template: "{% if messages[0]['role'] != 'user' %}{{ raise_exception('Conversation must start with user') }}{% endif %}ok",
  });
  const tpl = loadChatTemplate(dir);
  assert.ok(tpl !== null);
  assert.equal(tpl.render([{ role: 'user', content: 'x' }]), 'ok');
  assert.throws(
    () => tpl.render(MESSAGES),
    (e: unknown) => e instanceof ChatTemplateRenderError && e.message.includes('must start with user'),
  );
});

t.test('generated models carry a ChatML template that renders BOS and tokenizes to special ids', async () => {
  const { dir } = await createModel({ arch: 'mistral', preset: 'tiny', seed: 2, out: tempDir('chat-gen') });
  const tpl = loadChatTemplate(dir);
  assert.ok(tpl !== null);
  const text = tpl.render(MESSAGES, { addGenerationPrompt: true });
  assert.equal(text, '<s><|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi! ☕<|im_end|>\n<|im_start|>assistant\n');
  assert.equal(tpl.rendersBos, true);
  const ids = loadTokenizer(dir).encode(text, { addSpecialTokens: false });
  assert.deepEqual(ids.slice(0, 2), [0, 2]);
  assert.equal(ids.filter((id) => id === 3).length, 2);
});
