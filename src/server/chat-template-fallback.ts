import { Template } from '@huggingface/jinja';
import type { ChatMessage } from '../model/tokenizer-types.js';

/** ChatML, as Qwen and many fine-tunes use it. */
const CHATML =
  "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

const BUILTIN: Readonly<Record<string, string>> = { chatml: CHATML };

export type FallbackChatRenderer = (messages: readonly ChatMessage[], options: { addGenerationPrompt: boolean }) => string;

/**
 * The template from `model.chatTemplateFallback`: a built-in name ('chatml') or
 * an inline Jinja template. Parsed once, at start, so a broken template stops
 * the server instead of failing the first chat request.
 */
export function createFallbackChatRenderer(spec: string | null): FallbackChatRenderer | null {
  if (spec === null) return null;
  const source = BUILTIN[spec] ?? spec;
  if (BUILTIN[spec] === undefined && !source.includes('{{') && !source.includes('{%')) {
    throw new Error(`model.chatTemplateFallback: '${spec}' is neither a built-in template (${Object.keys(BUILTIN).join(', ')}) nor a Jinja template`);
  }
  let template: Template;
  try {
    template = new Template(source);
  } catch (err) {
    throw new Error(`model.chatTemplateFallback: cannot parse the Jinja template: ${(err as Error).message}`);
  }
  return (messages, { addGenerationPrompt }) =>
    template.render({
      messages: messages.map((m) => ({ role: m.role, content: m.content })),
      add_generation_prompt: addGenerationPrompt,
      bos_token: '',
      eos_token: '',
    });
}
