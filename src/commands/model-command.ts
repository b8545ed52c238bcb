/** `capserve model create | inspect | compile | profile`. */
import { parseArgs } from 'node:util';
import { compileModel, type QuantBlockSize } from '../model/compile/compile-model.js';
import { WEIGHT_DTYPES, type WeightDtype } from '../model/compile/decoder-graph.js';
import { loadCheckpoint } from '../model/checkpoint.js';
import { createModel } from '../model/create/create-model.js';
import { PRESETS, type Preset } from '../model/create/presets.js';
import { SUPPORTED_ARCHITECTURES, type Architecture } from '../model/spec.js';
import { kvBytesPerToken } from '../kv/sequence-kv.js';
import { runProfileCommand } from './profile-command.js';

function oneOf<T extends string>(name: string, value: string | undefined, allowed: readonly T[]): T {
  if (value === undefined || !(allowed as readonly string[]).includes(value)) {
    throw new Error(`--${name} must be one of ${allowed.join(', ')}, got ${value ?? '(missing)'}`);
  }
  return value as T;
}

/** Short names people type for an architecture whose Hugging Face model_type is longer. */
const ARCH_ALIASES: Readonly<Record<string, Architecture>> = { gemma3: 'gemma3_text' };

export async function runModelCommand(argv: string[]): Promise<void> {
  const [sub, ...rest] = argv;
  const progress = (m: string): void => void process.stderr.write(`${m}\n`);
  if (sub === 'create') {
    const { values } = parseArgs({
      args: rest,
      options: { arch: { type: 'string' }, preset: { type: 'string', default: 'tiny' }, seed: { type: 'string', default: '0' }, out: { type: 'string' } },
      strict: true,
    });
    if (!values.out) throw new Error('--out DIR is required');
    const seed = Number(values.seed);
    if (!Number.isSafeInteger(seed)) throw new Error(`--seed must be an integer, got ${values.seed}`);
    const created = await createModel({
      arch: oneOf<Architecture>('arch', values.arch === undefined ? undefined : (ARCH_ALIASES[values.arch] ?? values.arch), SUPPORTED_ARCHITECTURES),
      preset: oneOf<Preset>('preset', values.preset, PRESETS),
      seed,
      out: values.out,
      onProgress: progress,
    });
    process.stdout.write(`${created.dir}\n`);
    return;
  }
  if (sub === 'inspect') {
    const dir = rest[0];
    if (!dir) throw new Error('model inspect needs a directory');
    const cp = loadCheckpoint(dir);
    const s = cp.spec;
    const params = cp.weights.names().reduce((n, name) => n + cp.weights.info(name).shape.reduce((a: number, b: number) => a * b, 1), 0);
    process.stdout.write(
      `${JSON.stringify({ dir, spec: s, parameters: params, kvBytesPerToken: kvBytesPerToken(s), chatTemplate: cp.chatTemplate !== null }, null, 2)}\n`,
    );
    return;
  }
  if (sub === 'compile') {
    const { values, positionals } = parseArgs({
      args: rest,
      options: { dtype: { type: 'string', default: 'fp32' }, 'block-size': { type: 'string' }, 'cache-dir': { type: 'string', default: '.cache/compiled' } },
      allowPositionals: true,
      strict: true,
    });
    const dir = positionals[0];
    if (!dir) throw new Error('model compile needs a directory');
    const blockSize = values['block-size'];
    const compiled = compileModel(loadCheckpoint(dir), {
      cacheDir: values['cache-dir'],
      weightDtype: oneOf<WeightDtype>('dtype', values.dtype, WEIGHT_DTYPES),
      ...(blockSize !== undefined ? { quantBlockSize: Number(oneOf('block-size', blockSize, ['16', '32', '64', '128'])) as QuantBlockSize } : {}),
      onProgress: progress,
    });
    process.stdout.write(`${compiled.dir} (${compiled.weightBytes} weight bytes)\n`);
    return;
  }
  if (sub === 'profile') {
    await runProfileCommand(rest, progress);
    return;
  }
  throw new Error(`unknown model subcommand ${sub ?? '(none)'}; expected create, inspect, compile or profile`);
}
