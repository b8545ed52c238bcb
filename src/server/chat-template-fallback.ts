import { Template } from '@huggingface/jinja';

/** ChatML, as Qwen and many fine-tunes use it. */
const CHATML =
  "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

const BUILTIN: Readonly<Record<string, string>> = { chatml: CHATML };

/**
 * Resolves `model.chatTemplateFallback` (a built-in name such as 'chatml', or an
 * inline Jinja template) to Jinja source for the engine. Parsed here, at start,
 * so a broken template stops the server instead of failing the first chat request.
 */
export function resolveChatTemplateFallback(spec: string | null): string | null {
  if (spec === null) return null;
  const builtin = BUILTIN[spec];
  if (builtin !== undefined) return builtin;
  if (!spec.includes('{{') && !spec.includes('{%')) {
    throw new Error(`model.chatTemplateFallback: '${spec}' is neither a built-in template (${Object.keys(BUILTIN).join(', ')}) nor a Jinja template`);
  }
  try {
    new Template(spec);
  } catch (err) {
    throw new Error(`model.chatTemplateFallback: cannot parse the Jinja template: ${(err as Error).message}`, { cause: err });
  }
  return spec;
}
