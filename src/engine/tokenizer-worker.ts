/**
 * A tokenizer pool worker: encodes text, decodes ids and renders chat templates
 * for the HTTP thread, so a multi-megabyte prompt never holds the event loop. One job at a
 * time; the pool queues the rest.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { EngineError } from './errors.js';
import { TextProcessor } from './text-processor.js';
import type { FromTokenizer, ToTokenizer, TokenizerWorkerInit } from './tokenizer-protocol.js';

if (!parentPort) throw new Error('tokenizer-worker.ts must run as a worker thread');
const port = parentPort;
const init = workerData as TokenizerWorkerInit;
const text = new TextProcessor(init.modelDir, init.chatTemplateFallback, init.modelId);

port.on('message', (m: ToTokenizer) => {
  let reply: FromTokenizer;
  try {
    if (m.op === 'encode') {
      const tokens = Int32Array.from(text.encode(m.text, m.addSpecialTokens));
      port.postMessage({ id: m.id, ok: true, tokens } satisfies FromTokenizer, [tokens.buffer]);
      return;
    }
    if (m.op === 'decode') {
      reply = { id: m.id, ok: true, decoded: text.decode(m.ids) };
      port.postMessage(reply);
      return;
    }
    const r = text.render(m.messages, { addGenerationPrompt: m.addGenerationPrompt, ...(m.tools ? { tools: m.tools } : {}) });
    reply = { id: m.id, ok: true, text: r.text, addSpecialTokens: r.addSpecialTokens };
  } catch (err) {
    const e = err instanceof EngineError ? err : new EngineError('engine_failed', err instanceof Error ? err.message : String(err));
    reply = { id: m.id, ok: false, code: e.code, message: e.message, field: e.field };
  }
  port.postMessage(reply);
});
