/** Overflow handling: one function per mode, the dispatcher, the setting's schema and the error. */
export { compressToFit, type CompressionPolicyRef } from './compress.js';
export { ContextLengthExceededError } from './errors.js';
export { overflowError } from './error-mode.js';
export { evictDecision } from './evict.js';
export { fits, promptBudget, protectedHead } from './fit.js';
export { handleOverflow, type OverflowDeps } from './handle.js';
export { normalizeOverflow, OverflowSchema, type OverflowSetting } from './schema.js';
export { shiftPrompt } from './shift.js';
export { truncatePrompt } from './truncate.js';
export { OVERFLOW_MODES, type OverflowInput, type OverflowMode, type OverflowReport, type OverflowResult, type OverflowSpec } from './types.js';
