import type { PolicyParams, PositionMode, RuntimeNeeds } from './method-types.js';
import type { CapProfile, PolicyKind } from './types.js';

/** A configured policy: a named method with validated, default-filled, frozen params. */
export interface Policy {
  /** Stable kebab-case name, unique across the configuration ('snapkv-25'). */
  readonly name: string;
  readonly kind: PolicyKind;
  readonly method: string;
  readonly params: PolicyParams;
  readonly cap: CapProfile;
  /** What the runtime must collect while this policy is active. */
  readonly needs: RuntimeNeeds;
  /** Eviction only: how positions are handled after eviction; null for other kinds. */
  readonly positions: PositionMode | null;
  /** The file it came from, or '<built-in>'. */
  readonly source: string;
}
