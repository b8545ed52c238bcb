/**
 * Every way a checkpoint on disk can be unusable. The code is stable (tests and the
 * CLI switch on it); the message always names the file, and the tensor or field
 * where there is one, so a user can fix the checkpoint without reading our source.
 */
export type CheckpointErrorCode =
  | 'missing_file'
  | 'missing_tensor'
  | 'bad_header'
  | 'bad_shape'
  | 'unknown_dtype'
  | 'truncated'
  | 'unsupported_architecture'
  | 'unsupported_config'
  | 'bad_config'
  | 'bad_tokenizer'
  | 'bad_chat_template'
  | 'vocab_mismatch';

export class CheckpointError extends Error {
  override readonly name = 'CheckpointError';
  readonly code: CheckpointErrorCode;
  /** The file the problem was found in. */
  readonly file: string;

  constructor(code: CheckpointErrorCode, file: string, message: string, options?: { cause?: unknown }) {
    super(`${file}: ${message}`, options);
    this.code = code;
    this.file = file;
  }
}

/**
 * A chat template that parsed but refused the messages (e.g. raise_exception for
 * non-alternating roles). This is the request's fault, not the checkpoint's.
 */
export class ChatTemplateRenderError extends Error {
  override readonly name = 'ChatTemplateRenderError';
  readonly code = 'chat_template_render';
}
