/**
 * Generates a small Hugging Face checkpoint with random (seeded) weights and a
 * tokenizer of our own, for tests and benchmarks that need a model of a given
 * architecture and shape but no particular knowledge. Same options, same bytes.
 */
import fs from 'node:fs';
import path from 'node:path';
import { parseModelSpec } from '../hf-config.js';
import { SafetensorsWriter } from '../safetensors-writer.js';
import { SUPPORTED_ARCHITECTURES, type Architecture, type ModelSpec } from '../spec.js';
import { expectedTensors, type ExpectedTensor } from '../tensor-layout.js';
import { PRESETS, presetConfig, presetGenerationConfig, type Preset } from './presets.js';
import { Rng, hashString } from './prng.js';
import { buildTokenizer } from './tokenizer-builder.js';

export interface CreateModelOptions {
  readonly arch: Architecture;
  readonly preset: Preset;
  readonly seed: number;
  /** Output directory; created if missing, files in it overwritten. */
  readonly out: string;
  readonly onProgress?: (msg: string) => void;
  /**
   * config.json fields to set on top of the preset (e.g. rope_scaling, attention_bias,
   * sliding_window), for exercising paths the presets do not cover.
   */
  readonly configOverrides?: Readonly<Record<string, unknown>>;
}

export interface CreatedModel {
  readonly dir: string;
  readonly spec: ModelSpec;
}

/**
 * Scales chosen so activations stay O(1) through the layers and logits have a
 * standard deviation of about 2: peaked enough that greedy decoding is stable, far
 * from one-hot so that sampling and fidelity metrics have something to measure.
 */
function initFor(t: ExpectedTensor, spec: ModelSpec): { mean: number; std: number } {
  const n = t.name;
  const residualScale = 1 / Math.sqrt(2 * spec.numLayers);
  if (n === 'model.embed_tokens.weight' || n === 'lm_head.weight') return { mean: 0, std: 2 / Math.sqrt(spec.hiddenSize) };
  // Gemma's norms multiply by (1 + weight).
  if (n.endsWith('norm.weight')) return { mean: spec.normUnitOffset ? 0 : 1, std: 0.1 };
  if (n.endsWith('o_proj.bias')) return { mean: 0, std: 0.1 };
  if (n.endsWith('.bias')) return { mean: 0, std: 0.2 };
  if (n.endsWith('o_proj.weight')) return { mean: 0, std: residualScale / Math.sqrt(spec.numHeads * spec.headDim) };
  if (n.includes('.shared_expert.down_proj.')) return { mean: 0, std: residualScale / Math.sqrt(spec.moe?.sharedExpertIntermediateSize ?? 1) };
  if (spec.moe !== undefined && (n.endsWith('.w2.weight') || n.endsWith('down_proj.weight'))) {
    return { mean: 0, std: residualScale / Math.sqrt(spec.moe.expertIntermediateSize) };
  }
  if (n.endsWith('down_proj.weight')) return { mean: 0, std: residualScale / Math.sqrt(spec.intermediateSize) };
  return { mean: 0, std: 1 / Math.sqrt(spec.hiddenSize) };
}

function writeJson(file: string, value: unknown): void {
  fs.writeFileSync(file, JSON.stringify(value, null, 2) + '\n');
}

export async function createModel(options: CreateModelOptions): Promise<CreatedModel> {
  const { arch, preset, seed, out } = options;
  if (!SUPPORTED_ARCHITECTURES.includes(arch)) throw new Error(`unknown arch ${arch} (expected one of ${SUPPORTED_ARCHITECTURES.join(', ')})`);
  if (!PRESETS.includes(preset)) throw new Error(`unknown preset ${preset} (expected one of ${PRESETS.join(', ')})`);
  if (!Number.isSafeInteger(seed)) throw new Error(`seed must be an integer, got ${seed}`);
  const progress = options.onProgress ?? (() => {});
  const dir = path.resolve(out);
  fs.mkdirSync(dir, { recursive: true });

  const config = { ...presetConfig(arch, preset), ...options.configOverrides };
  const generationConfig = presetGenerationConfig();
  const configFile = path.join(dir, 'config.json');
  const spec = parseModelSpec(config, generationConfig, configFile);

  progress(`building a ${spec.vocabSize}-token tokenizer`);
  const tok = buildTokenizer(spec.vocabSize, spec.maxPositionEmbeddings);
  writeJson(configFile, config);
  writeJson(path.join(dir, 'generation_config.json'), generationConfig);
  writeJson(path.join(dir, 'tokenizer.json'), tok.tokenizerJson);
  writeJson(path.join(dir, 'tokenizer_config.json'), tok.tokenizerConfig);

  const tensors = expectedTensors(spec).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const total = tensors.reduce((sum, t) => sum + t.shape.reduce((a, b) => a * b, 1), 0);
  progress(`writing ${tensors.length} tensors (${(total / 1e6).toFixed(1)}M parameters, F32)`);
  const writer = new SafetensorsWriter(path.join(dir, 'model.safetensors'), tensors, 'F32', {
    format: 'pt',
    generator: `capserve createModel arch=${arch} preset=${preset} seed=${seed}`,
  });
  try {
    for (const t of tensors) {
      const data = new Float32Array(t.shape.reduce((a, b) => a * b, 1));
      const { mean, std } = initFor(t, spec);
      // One stream per tensor name: a tensor's values do not depend on which others exist.
      new Rng(seed, hashString(t.name)).fillNormal(data, mean, std);
      writer.write(t.name, data);
    }
  } catch (err) {
    writer.abort();
    throw err;
  }
  writer.close();
  progress(`wrote ${arch} ${preset} (seed ${seed}) to ${dir}`);
  return { dir, spec };
}
