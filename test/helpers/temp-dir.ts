/** Scratch directories for tests: each removed when the test process exits. */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const tempDirs: string[] = [];

/**
 * A fresh directory `capserve-<prefix>-XXXXXX` under the OS temp dir, removed at process
 * exit (one exit listener for all of them). Compiled models land here: a helper that left
 * them behind filled /tmp with ~5 GB after a day of test runs.
 */
export function tempDir(prefix: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `capserve-${prefix}-`));
  if (tempDirs.length === 0) {
    process.on('exit', () => {
      for (const d of tempDirs) fs.rmSync(d, { recursive: true, force: true });
    });
  }
  tempDirs.push(dir);
  return dir;
}
