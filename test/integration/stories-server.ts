/**
 * One real server on stories260K per test file, with an openai SDK client and the
 * model's tokenizer: started in `before`, closed in `after`. `skip` is the reason to
 * skip when ../shared is absent, else false.
 */
import t from 'tap';
import OpenAI from 'openai';
import { loadTokenizer } from '../../src/model/tokenizer.js';
import type { TextTokenizer } from '../../src/model/tokenizer-types.js';
import { startServer, storiesModelDir, type RunningServer } from './server-harness.js';

export interface StoriesServer {
  readonly server: RunningServer;
  readonly client: OpenAI;
  readonly tok: TextTokenizer;
  readonly modelDir: string;
}

export const storiesSkip: string | false = storiesModelDir() === null ? 'stories260K not found (set CAPSERVE_SHARED to the shared folder)' : false;

export function useStoriesServer(options: { readonly timeoutMs?: number } = {}): () => StoriesServer {
  let current: StoriesServer | null = null;
  t.before(async () => {
    const modelDir = storiesModelDir();
    if (modelDir === null) return;
    const server = await startServer(modelDir);
    const client = new OpenAI({ baseURL: `${server.baseUrl}/v1`, apiKey: 'unused', maxRetries: 0, timeout: options.timeoutMs ?? 20_000 });
    current = { server, client, tok: loadTokenizer(modelDir), modelDir };
  });
  t.teardown(async () => {
    await current?.server.close();
  });
  return () => {
    if (current === null) throw new Error('the stories260K server is not running (skipped, or before() failed)');
    return current;
  };
}
