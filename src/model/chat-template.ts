/**
 * The checkpoint's Jinja chat template (tokenizer_config.json chat_template, or the
 * newer standalone chat_template.jinja), rendered with @huggingface/jinja the way
 * transformers' apply_chat_template does.
 */
import fs from 'node:fs';
import path from 'node:path';
import { Template } from '@huggingface/jinja';
import { ChatTemplateRenderError, CheckpointError } from './errors.js';
import type { ChatMessage, ChatRenderOptions, ChatTemplate, ToolCallFormat } from './tokenizer-types.js';

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Special tokens appear either as strings or as AddedToken objects ({content, ...}). */
function tokenString(v: unknown): string | null {
  if (typeof v === 'string') return v;
  if (isRecord(v) && typeof v.content === 'string') return v.content;
  return null;
}

function pickTemplate(raw: unknown, file: string): string | null {
  if (raw === undefined || raw === null) return null;
  if (typeof raw === 'string') return raw;
  if (Array.isArray(raw)) {
    for (const entry of raw) {
      if (isRecord(entry) && entry.name === 'default' && typeof entry.template === 'string') return entry.template;
    }
    throw new CheckpointError('bad_chat_template', file, 'chat_template is a list without a {name: "default", template} entry');
  }
  throw new CheckpointError('bad_chat_template', file, 'chat_template must be a string or a list of {name, template}');
}

/** The tool-call format a template's source shows, or null when it never reads `tools`. */
export function detectToolFormat(source: string): ToolCallFormat | null {
  if (!/\btools\b/.test(source)) return null;
  if (source.includes('[TOOL_CALLS]')) return 'mistral';
  if (source.includes('<tool_call>')) return 'hermes';
  if (source.includes('<|python_tag|>') || source.includes('ipython')) return 'llama3';
  return 'hermes';
}

class JinjaChatTemplate implements ChatTemplate {
  readonly rendersBos: boolean;
  readonly toolFormat: ToolCallFormat | null;
  private readonly template: Template;

  constructor(
    source: string,
    private readonly specialTokens: Readonly<Record<string, string | null>>,
    file: string,
  ) {
    try {
      this.template = new Template(source);
    } catch (err) {
      throw new CheckpointError('bad_chat_template', file, `chat template does not parse: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
    this.rendersBos = this.probeBos(specialTokens.bos_token ?? null);
    this.toolFormat = detectToolFormat(source);
  }

  render(messages: readonly ChatMessage[], options?: ChatRenderOptions): string {
    try {
      return this.template.render({
        ...this.specialTokens,
        messages: messages.map((m) => ({ ...m })),
        add_generation_prompt: options?.addGenerationPrompt ?? false,
        ...(options?.tools !== undefined && options.tools.length > 0 ? { tools: options.tools } : {}),
      });
    } catch (err) {
      throw new ChatTemplateRenderError(`chat template refused the messages: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
  }

  /** Some templates insist on a system turn or on alternation, so try a few shapes. */
  private probeBos(bos: string | null): boolean {
    if (bos === null || bos === '') return false;
    const probes: ChatMessage[][] = [
      [{ role: 'user', content: 'x' }],
      [
        { role: 'system', content: 'x' },
        { role: 'user', content: 'x' },
      ],
      [
        { role: 'user', content: 'x' },
        { role: 'assistant', content: 'x' },
      ],
    ];
    for (const probe of probes) {
      try {
        return this.render(probe, { addGenerationPrompt: true }).startsWith(bos);
      } catch {
        // try the next shape
      }
    }
    return false;
  }
}

/**
 * Returns null when the checkpoint has no chat template and no fallback is given
 * (a base model: only completions make sense).
 */
export function loadChatTemplate(dir: string, fallbackTemplate?: string): ChatTemplate | null {
  const configFile = path.join(dir, 'tokenizer_config.json');
  let config: Record<string, unknown> = {};
  if (fs.existsSync(configFile)) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(fs.readFileSync(configFile, 'utf8'));
    } catch (err) {
      throw new CheckpointError('bad_tokenizer', configFile, 'is not valid JSON', { cause: err });
    }
    if (!isRecord(parsed)) throw new CheckpointError('bad_tokenizer', configFile, 'is not a JSON object');
    config = parsed;
  }
  const jinjaFile = path.join(dir, 'chat_template.jinja');
  let source: string | null;
  let sourceFile: string;
  if (fs.existsSync(jinjaFile)) {
    source = fs.readFileSync(jinjaFile, 'utf8');
    sourceFile = jinjaFile;
  } else {
    source = pickTemplate(config.chat_template, configFile);
    sourceFile = configFile;
  }
  if (source === null && fallbackTemplate !== undefined) {
    source = fallbackTemplate;
    sourceFile = '(fallback chat template)';
  }
  if (source === null) return null;
  const specialTokens = {
    bos_token: tokenString(config.bos_token),
    eos_token: tokenString(config.eos_token),
    unk_token: tokenString(config.unk_token),
    pad_token: tokenString(config.pad_token),
  };
  return new JinjaChatTemplate(source, specialTokens, sourceFile);
}
