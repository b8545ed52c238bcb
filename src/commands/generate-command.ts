/** `capserve generate`: stream a completion to the terminal through the same engine the server uses. */
import { parseArgs } from 'node:util';
import { createLocalEngine } from '../engine/local-engine.js';
import { DEFAULT_SAMPLING } from '../engine/types.js';
import { WEIGHT_DTYPES, type WeightDtype } from '../model/compile/decoder-graph.js';
import { ensureDefaultModel, DEFAULT_MODEL_DIR } from '../model/default-model.js';

function num(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isFinite(n)) throw new Error(`--${name} must be a number, got ${value}`);
  return n;
}

export async function runGenerate(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      model: { type: 'string', default: DEFAULT_MODEL_DIR },
      prompt: { type: 'string' },
      'max-tokens': { type: 'string' },
      temperature: { type: 'string' },
      'top-p': { type: 'string' },
      'top-k': { type: 'string' },
      seed: { type: 'string' },
      dtype: { type: 'string', default: 'fp32' },
      chat: { type: 'boolean', default: false },
      'cache-dir': { type: 'string', default: '.cache/compiled' },
    },
    strict: true,
  });
  if (values.prompt === undefined) throw new Error('--prompt is required');
  const dtype = values.dtype as WeightDtype;
  if (!WEIGHT_DTYPES.includes(dtype)) throw new Error(`--dtype must be one of ${WEIGHT_DTYPES.join(', ')}, got ${values.dtype}`);
  const progress = (m: string): void => void process.stderr.write(`${m}\n`);
  await ensureDefaultModel(values.model, progress);
  const engine = await createLocalEngine({ modelDir: values.model, cacheDir: values['cache-dir'], weightDtype: dtype, onProgress: progress, maxConcurrent: 1 });
  try {
    let promptTokens: number[];
    if (values.chat) {
      const r = await engine.renderChat([{ role: 'user', content: values.prompt }]);
      promptTokens = await engine.tokenize(r.text, { addSpecialTokens: r.addSpecialTokens });
    } else {
      promptTokens = await engine.tokenize(values.prompt);
    }
    const context = engine.models()[0]?.contextLength ?? 0;
    const sampling = {
      ...DEFAULT_SAMPLING,
      temperature: num('temperature', values.temperature, 0),
      topP: num('top-p', values['top-p'], 1),
      topK: num('top-k', values['top-k'], 0),
      seed: values.seed === undefined ? null : num('seed', values.seed, 0),
      maxTokens: num('max-tokens', values['max-tokens'], Math.max(1, Math.min(256, context - promptTokens.length))),
    };
    if (!values.chat) process.stdout.write(values.prompt);
    const t0 = performance.now();
    let n = 0;
    for await (const ev of engine.generate({ id: 'cli-0', promptTokens, sampling, policy: 'full' })) {
      process.stdout.write(ev.text);
      if (ev.type === 'token') n += 1;
      else
        process.stderr.write(
          `\n[${ev.finishReason}: ${ev.usage.promptTokens} prompt + ${ev.usage.completionTokens} generated tokens, ${((n * 1000) / (performance.now() - t0)).toFixed(1)} tokens/s]\n`,
        );
    }
  } finally {
    await engine.close();
  }
}
