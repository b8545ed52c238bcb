/**
 * A Hugging Face checkpoint directory, loaded and checked: config -> ModelSpec,
 * every tensor the architecture needs present with the right shape, tokenizer and
 * chat template. Tensor data stays on disk until asked for.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { loadChatTemplate } from './chat-template.js';
import { CheckpointError } from './errors.js';
import { parseModelSpec } from './hf-config.js';
import { SHARD_INDEX, SafetensorsFile, openWeights, type CheckpointWeights } from './safetensors.js';
import { STORAGE_DTYPES, isStorageDtype } from './dtype.js';
import type { ModelSpec } from './spec.js';
import { expectedTensors } from './tensor-layout.js';
import { loadTokenizer } from './tokenizer.js';
import type { ChatTemplate, TextTokenizer } from './tokenizer-types.js';

export interface Checkpoint {
  readonly dir: string;
  readonly spec: ModelSpec;
  readonly weights: CheckpointWeights;
  readonly tokenizer: TextTokenizer;
  readonly chatTemplate: ChatTemplate | null;
  /** sha256 (hex) over config.json, generation_config.json and every weight file; computed once. */
  contentHash(): string;
}

const HASH_CHUNK = 8 * 1024 * 1024;

/** The parsed file; null when it is absent and not required. */
function readJsonFile(file: string, required: boolean): unknown {
  if (!fs.existsSync(file)) {
    if (required) throw new CheckpointError('missing_file', file, 'required checkpoint file does not exist');
    return null;
  }
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (err) {
    throw new CheckpointError('bad_config', file, 'is not valid JSON', { cause: err });
  }
}

function checkTensors(spec: ModelSpec, weights: CheckpointWeights): void {
  for (const want of expectedTensors(spec)) {
    if (!weights.has(want.name)) {
      throw new CheckpointError(
        'missing_tensor',
        weights.files[0] ?? '(weights)',
        `tensor ${want.name} is missing (expected shape [${want.shape.join(', ')}])`,
      );
    }
    const info = weights.info(want.name);
    if (info.shape.length !== want.shape.length || info.shape.some((d, i) => d !== want.shape[i])) {
      throw new CheckpointError(
        'bad_shape',
        info.file,
        `tensor ${want.name} has shape [${info.shape.join(', ')}], config.json implies [${want.shape.join(', ')}]`,
      );
    }
    if (!isStorageDtype(info.dtype)) {
      throw new CheckpointError(
        'unknown_dtype',
        info.file,
        `tensor ${want.name}: dtype ${info.dtype} is not supported (supported: ${STORAGE_DTYPES.join(', ')})`,
      );
    }
  }
}

function hashFiles(files: readonly string[]): string {
  const hash = crypto.createHash('sha256');
  const buf = Buffer.allocUnsafe(HASH_CHUNK);
  for (const file of files) {
    const fd = fs.openSync(file, 'r');
    try {
      const size = fs.fstatSync(fd).size;
      // Frame each file by name and length so moving bytes between files changes the hash.
      hash.update(`${path.basename(file)}\0${size}\0`);
      let pos = 0;
      for (;;) {
        const n = fs.readSync(fd, buf, 0, HASH_CHUNK, pos);
        if (n === 0) break;
        hash.update(buf.subarray(0, n));
        pos += n;
      }
    } finally {
      fs.closeSync(fd);
    }
  }
  return hash.digest('hex');
}

export function loadCheckpoint(dir: string): Checkpoint {
  const root = path.resolve(dir);
  if (!fs.existsSync(root) || !fs.statSync(root).isDirectory()) {
    throw new CheckpointError('missing_file', root, 'checkpoint directory does not exist');
  }
  const configFile = path.join(root, 'config.json');
  const generationFile = path.join(root, 'generation_config.json');
  const spec = parseModelSpec(readJsonFile(configFile, true), readJsonFile(generationFile, false), configFile);
  const weights = openWeights(root);
  checkTensors(spec, weights);
  const tokenizer = loadTokenizer(root);
  if (tokenizer.vocabSize > spec.vocabSize) {
    throw new CheckpointError(
      'vocab_mismatch',
      path.join(root, 'tokenizer.json'),
      `tokenizer has ${tokenizer.vocabSize} ids but config.json vocab_size is ${spec.vocabSize}`,
    );
  }
  const chatTemplate = loadChatTemplate(root);

  const hashed = [configFile];
  if (fs.existsSync(generationFile)) hashed.push(generationFile);
  if (!(weights instanceof SafetensorsFile)) hashed.push(path.join(root, SHARD_INDEX));
  hashed.push(...weights.files);
  let hash: string | null = null;

  return {
    dir: root,
    spec,
    weights,
    tokenizer,
    chatTemplate,
    contentHash: () => (hash ??= hashFiles(hashed)),
  };
}
