/**
 * The `overflow` setting as config files and requests spell it: a bare mode
 * ("truncate") or an object ({mode: shift, keep: 64}). Defaults live in
 * normalizeOverflow, not in the schema, because defaults inside a union are
 * ignored by ajv.
 */
import { Type, type Static } from '@sinclair/typebox';
import type { OverflowSpec } from './types.js';

const POLICY_NAME = '^[a-z0-9]+(-[a-z0-9]+)*$';

export const OVERFLOW_EXPECTS =
  'one of "error", "truncate", "shift", or an object {mode: error} | {mode: truncate, side?: left|middle} | {mode: shift, keep?: integer >= 0 | "system"} | {mode: compress, policy: NAME} | {mode: evict, policy: NAME}';

export const OverflowSchema = Type.Union(
  [
    Type.Union([Type.Literal('error'), Type.Literal('truncate'), Type.Literal('shift')]),
    Type.Object({ mode: Type.Literal('error') }, { additionalProperties: false }),
    Type.Object(
      {
        mode: Type.Literal('truncate'),
        side: Type.Optional(
          Type.Union([Type.Literal('left'), Type.Literal('middle')], {
            description: 'left (default): drop the oldest tokens after the system message; middle: drop the middle.',
          }),
        ),
      },
      { additionalProperties: false },
    ),
    Type.Object(
      {
        mode: Type.Literal('shift'),
        keep: Type.Optional(
          Type.Union([Type.Integer({ minimum: 0 }), Type.Literal('system')], {
            description: "n_keep: tokens kept at the start; 'system' (default): BOS, the system message and its end marker.",
          }),
        ),
      },
      { additionalProperties: false },
    ),
    Type.Object(
      { mode: Type.Literal('compress'), policy: Type.String({ pattern: POLICY_NAME, description: 'A configured context-compression policy.' }) },
      { additionalProperties: false },
    ),
    Type.Object(
      { mode: Type.Literal('evict'), policy: Type.String({ pattern: POLICY_NAME, description: 'A configured KV-eviction policy.' }) },
      { additionalProperties: false },
    ),
  ],
  {
    description: 'What to do when prompt + max_tokens exceed the context window. Default: error.',
    'x-expects': OVERFLOW_EXPECTS,
  },
);

export type OverflowSetting = Static<typeof OverflowSchema>;

/** Defaults: truncate side left; shift keeps 'system'. */
export function normalizeOverflow(setting: OverflowSetting): OverflowSpec {
  if (typeof setting === 'string') {
    switch (setting) {
      case 'error':
        return { mode: 'error' };
      case 'truncate':
        return { mode: 'truncate', side: 'left' };
      case 'shift':
        return { mode: 'shift', keep: 'system' };
    }
  }
  switch (setting.mode) {
    case 'error':
      return { mode: 'error' };
    case 'truncate':
      return { mode: 'truncate', side: setting.side ?? 'left' };
    case 'shift':
      return { mode: 'shift', keep: setting.keep ?? 'system' };
    case 'compress':
      return { mode: 'compress', policy: setting.policy };
    case 'evict':
      return { mode: 'evict', policy: setting.policy };
  }
}
