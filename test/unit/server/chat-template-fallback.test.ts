import t from 'tap';
import assert from 'node:assert/strict';
import { Template } from '@huggingface/jinja';
import { resolveChatTemplateFallback } from '../../../src/server/chat-template-fallback.js';

t.test('chatml resolves to a ChatML template that renders the generation prompt', async () => {
  const source = resolveChatTemplateFallback('chatml');
  assert.ok(source !== null);
  const text = new Template(source).render({
    messages: [
      { role: 'system', content: 'S' },
      { role: 'user', content: 'U' },
    ],
    add_generation_prompt: true,
  });
  assert.equal(text, '<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n');
});

t.test('inline Jinja passes through; null stays null; junk and broken templates fail at start', async () => {
  assert.equal(resolveChatTemplateFallback(null), null);
  const inline = '{% for m in messages %}{{ m.content }}{% endfor %}';
  assert.equal(resolveChatTemplateFallback(inline), inline);
  assert.throws(() => resolveChatTemplateFallback('llama3'), /neither a built-in template \(chatml\) nor a Jinja template/);
  assert.throws(() => resolveChatTemplateFallback('{% for m in messages %}'), /cannot parse the Jinja template/);
});
