/**
 * The compile cache's one discipline, shared by the dense and MoE compilers.
 *
 * An entry is a directory named by its key. It is built in a temporary sibling and
 * renamed into place, never written where it is read. Its manifest lists every file
 * it holds with its byte length and CRC-32 (a fast non-cryptographic checksum:
 * a zeroed, truncated or swapped file is caught, a forged one is not our threat).
 * An entry is used only when its manifest parses, matches the key, and every file
 * is present with its length and checksum; otherwise the caller is told why in one
 * line naming the entry, the entry is discarded, and the model is recompiled.
 *
 * Two processes compiling one key race harmlessly: each builds its own temporary
 * directory; the first rename wins, and a loser whose target is already a sound
 * entry uses that one and drops its own work. A broken entry is not deleted where
 * it lies (another process may be replacing it at that moment): publishing moves
 * it aside, and puts back an entry it finds sound after all.
 */
import { closeSync, existsSync, openSync, readFileSync, readSync, renameSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';

export interface FileDigest {
  readonly bytes: number;
  readonly crc32: number;
}

/** File name relative to the entry -> its length and checksum. */
export type FileDigests = Readonly<Record<string, FileDigest>>;

const CHUNK = 4 * 1024 * 1024;

/** Reads a file once, in fixed chunks, and returns its length and CRC-32. */
export function digestFile(path: string): FileDigest {
  const fd = openSync(path, 'r');
  try {
    const buf = Buffer.allocUnsafe(CHUNK);
    let crc = 0;
    let bytes = 0;
    for (;;) {
      const n = readSync(fd, buf, 0, CHUNK, bytes);
      if (n === 0) break;
      crc = crc32(buf.subarray(0, n), crc);
      bytes += n;
    }
    return { bytes, crc32: crc };
  } finally {
    closeSync(fd);
  }
}

export function digestFiles(dir: string, names: readonly string[]): FileDigests {
  const out: Record<string, FileDigest> = {};
  for (const name of names) out[name] = digestFile(join(dir, name));
  return out;
}

/**
 * Null when every listed file is present with its recorded length and checksum;
 * otherwise what is wrong with the first one that is not. Lengths are checked for
 * all files before any content is read, so truncation costs no hashing.
 */
export function checkFiles(dir: string, files: FileDigests): string | null {
  const entries = Object.entries(files);
  if (entries.length === 0) return 'the manifest lists no files';
  for (const [name, want] of entries) {
    const path = join(dir, name);
    if (!existsSync(path)) return `${name} is missing`;
    const size = statSync(path).size;
    if (size !== want.bytes) return `${name} has ${size} bytes, the manifest says ${want.bytes}`;
  }
  for (const [name, want] of entries) {
    const got = digestFile(join(dir, name));
    if (got.crc32 !== want.crc32) return `${name} does not match its checksum (corrupted)`;
  }
  return null;
}

export type EntryCheck<T> = { readonly ok: true; readonly manifest: T } | { readonly ok: false; readonly problem: string };

/**
 * Reads and checks the entry at `dir`: null when there is no entry at all;
 * otherwise the manifest, or the problem that makes the entry unusable.
 * `accept` checks the parsed manifest's own fields (version, key) and returns
 * its file list, or a problem.
 */
export function readEntry<T>(
  dir: string,
  manifestName: string,
  accept: (manifest: unknown) => { readonly manifest: T; readonly files: FileDigests } | string,
): EntryCheck<T> | null {
  if (!existsSync(dir)) return null;
  const path = join(dir, manifestName);
  if (!existsSync(path)) return { ok: false, problem: `${manifestName} is missing` };
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'));
  } catch {
    return { ok: false, problem: `${manifestName} is not valid JSON` };
  }
  const accepted = accept(parsed);
  if (typeof accepted === 'string') return { ok: false, problem: accepted };
  const problem = checkFiles(dir, accepted.files);
  return problem === null ? { ok: true, manifest: accepted.manifest } : { ok: false, problem };
}

/** Reports an unusable entry in one line; the recompiled entry replaces it when published. */
export function discardEntry(dir: string, problem: string, log: ((line: string) => void) | undefined): void {
  log?.(`compile cache entry ${dir} is unusable (${problem}); discarding it and recompiling`);
}

/**
 * Moves the finished temporary directory into place. If another process got
 * there first with a sound entry (`isSound(dir)`), that one is kept and ours
 * dropped; a stale or broken entry in the way is moved aside, then removed.
 */
export function publishEntry(tmp: string, dir: string, isSound: (path: string) => boolean): 'published' | 'existing' {
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      renameSync(tmp, dir);
      return 'published';
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw err;
    }
    if (isSound(dir)) {
      rmSync(tmp, { recursive: true, force: true });
      return 'existing';
    }
    const aside = `${dir}.stale-${process.pid}-${Date.now()}`;
    try {
      renameSync(dir, aside);
    } catch {
      continue; // someone else moved it meanwhile: try again
    }
    // Another process may have published a sound entry between our check and the move: put it back.
    if (isSound(aside)) {
      try {
        renameSync(aside, dir);
        rmSync(tmp, { recursive: true, force: true });
        return 'existing';
      } catch {
        // the place was taken again; that entry is checked on the next attempt
      }
    }
    rmSync(aside, { recursive: true, force: true });
  }
  throw new Error(`could not move the compiled model into ${dir}: another process keeps replacing it`);
}

/** A fresh, unique temporary sibling of `dir`. */
export function temporaryEntryDir(dir: string): string {
  return `${dir}.tmp-${process.pid}-${Date.now()}-${Math.random().toString(36).slice(2, 8)}`;
}
