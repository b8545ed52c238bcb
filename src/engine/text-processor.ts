/**
 * A model's text side, the one place tokenization, detokenization and chat-template
 * rendering are defined: used inline on the HTTP thread for small inputs and by the tokenizer
 * pool's workers for everything else (tokenizer-pool.ts), so both give the same ids.
 */
import { loadChatTemplate } from '../model/chat-template.js';
import { loadTokenizer } from '../model/tokenizer.js';
import type { ChatMessage, ChatRenderOptions, ChatTemplate, TextTokenizer, ToolCallFormat } from '../model/tokenizer-types.js';
import { EngineError } from './errors.js';

export interface RenderedChat {
  readonly text: string;
  /** False when the template already renders BOS, so encoding must not add another. */
  readonly addSpecialTokens: boolean;
}

export class TextProcessor {
  readonly tokenizer: TextTokenizer;
  private readonly chatTemplate: ChatTemplate | null;

  constructor(
    modelDir: string,
    chatTemplateFallback: string | undefined,
    /** Named in the no-template error. */
    private readonly modelId: string,
  ) {
    this.tokenizer = loadTokenizer(modelDir);
    this.chatTemplate = loadChatTemplate(modelDir, chatTemplateFallback);
  }

  get hasChatTemplate(): boolean {
    return this.chatTemplate !== null;
  }

  get toolFormat(): ToolCallFormat | null {
    return this.chatTemplate?.toolFormat ?? null;
  }

  encode(text: string, addSpecialTokens: boolean): number[] {
    return this.tokenizer.encode(text, { addSpecialTokens });
  }

  /** The text of `ids`, special tokens skipped (what /detokenize and echo show). */
  decode(ids: ArrayLike<number>): string {
    return this.tokenizer.decode(Array.from(ids), { skipSpecialTokens: true });
  }

  render(messages: readonly ChatMessage[], options: ChatRenderOptions = {}): RenderedChat {
    if (!this.chatTemplate) {
      throw new EngineError(
        'no_chat_template',
        `model ${this.modelId} has no chat template (tokenizer_config.json has no chat_template) and the config names no fallback; use /v1/completions`,
        { field: 'chat' },
      );
    }
    const text = this.chatTemplate.render(messages, {
      addGenerationPrompt: options.addGenerationPrompt ?? true,
      ...(options.tools ? { tools: options.tools } : {}),
    });
    return { text, addSpecialTokens: !this.chatTemplate.rendersBos };
  }
}
