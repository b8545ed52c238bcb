/** Locates ../shared (the team's read-only models and data); tests skip with a message when absent. */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';

export const SHARED_DIR = resolve(process.env['CAPSERVE_SHARED'] ?? resolve(process.cwd(), '../shared'));

export function sharedPath(...parts: string[]): string {
  return resolve(SHARED_DIR, ...parts);
}

export const STORIES_DIR = sharedPath('models', 'stories260K');

/** Null when present; otherwise the reason to pass to t.skip(). */
export function missingShared(...parts: string[]): string | null {
  const p = sharedPath(...parts);
  return existsSync(p) ? null : `shared data not found at ${p} (set CAPSERVE_SHARED); skipping`;
}
