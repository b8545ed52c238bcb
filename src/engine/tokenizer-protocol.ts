/** Messages between the tokenizer pool (HTTP thread) and its workers. */
import type { ChatMessage } from '../model/tokenizer-types.js';
import type { EngineErrorCode, RequestField } from './errors.js';

export interface TokenizerWorkerInit {
  readonly modelDir: string;
  readonly modelId: string;
  readonly chatTemplateFallback?: string;
}

export type ToTokenizer =
  | { readonly id: number; readonly op: 'encode'; readonly text: string; readonly addSpecialTokens: boolean }
  | {
      readonly id: number;
      readonly op: 'render';
      readonly messages: readonly ChatMessage[];
      readonly addGenerationPrompt: boolean;
      readonly tools?: readonly unknown[];
    }
  | { readonly id: number; readonly op: 'decode'; readonly ids: Float64Array };

export type FromTokenizer =
  | { readonly id: number; readonly ok: true; readonly tokens: Int32Array }
  | { readonly id: number; readonly ok: true; readonly text: string; readonly addSpecialTokens: boolean }
  | { readonly id: number; readonly ok: true; readonly decoded: string }
  | { readonly id: number; readonly ok: false; readonly code: EngineErrorCode; readonly message: string; readonly field: RequestField | null };
