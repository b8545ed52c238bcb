/**
 * Lazy safetensors reader. The header is parsed and validated against the file size
 * at open; tensor bytes are read on demand with positioned reads, so a large
 * checkpoint is never held in memory twice.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CheckpointError } from './errors.js';
import { DTYPE_BYTES, OTHER_DTYPE_BYTES, STORAGE_DTYPES, bf16ToF32Array, f16ToF32Array, isStorageDtype } from './dtype.js';
import type { WeightSource, WeightTensor } from './spec.js';

export { writeSafetensors, SafetensorsWriter } from './safetensors-writer.js';

/** safetensors itself refuses headers above 100 MB; a larger one means a corrupt length prefix. */
const MAX_HEADER_BYTES = 100 * 1024 * 1024;
const MAX_READ_CHUNK = 1 << 30;

export interface TensorInfo {
  readonly name: string;
  /** As spelled in the file (F32, F16, BF16, or another dtype that get() refuses). */
  readonly dtype: string;
  readonly shape: readonly number[];
  readonly file: string;
  /** Absolute byte offset of the tensor's data in the file. */
  readonly offset: number;
  readonly byteLength: number;
}

/** A WeightSource that can also describe a tensor without reading it. */
export interface CheckpointWeights extends WeightSource {
  info(name: string): TensorInfo;
  /** Every file the weights live in, in a stable order (for hashing). */
  readonly files: readonly string[];
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isNonNegativeInt(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

function readFully(fd: number, target: Uint8Array, position: number): number {
  let done = 0;
  while (done < target.length) {
    const n = fs.readSync(fd, target, done, Math.min(target.length - done, MAX_READ_CHUNK), position + done);
    if (n === 0) break;
    done += n;
  }
  return done;
}

export class SafetensorsFile implements CheckpointWeights {
  readonly path: string;
  readonly metadata: Readonly<Record<string, string>>;
  readonly files: readonly string[];
  private readonly entries: Map<string, TensorInfo>;

  private constructor(file: string, metadata: Record<string, string>, entries: Map<string, TensorInfo>) {
    this.path = file;
    this.files = [file];
    this.metadata = metadata;
    this.entries = entries;
  }

  static open(file: string): SafetensorsFile {
    if (os.endianness() !== 'LE') {
      throw new CheckpointError('unknown_dtype', file, 'safetensors data is little-endian; big-endian hosts are not supported');
    }
    let fd: number;
    try {
      fd = fs.openSync(file, 'r');
    } catch (err) {
      throw new CheckpointError('missing_file', file, 'cannot open safetensors file', { cause: err });
    }
    try {
      const size = fs.fstatSync(fd).size;
      if (size < 8) throw new CheckpointError('truncated', file, `file is ${size} bytes, shorter than the 8-byte header length`);
      const lenBuf = Buffer.alloc(8);
      readFully(fd, lenBuf, 0);
      const headerLen = lenBuf.readBigUInt64LE(0);
      if (headerLen > BigInt(MAX_HEADER_BYTES)) {
        throw new CheckpointError('bad_header', file, `header length ${headerLen} is implausible (over ${MAX_HEADER_BYTES} bytes)`);
      }
      const n = Number(headerLen);
      if (8 + n > size) throw new CheckpointError('truncated', file, `header length ${n} runs past the end of the ${size}-byte file`);
      const headerBuf = Buffer.alloc(n);
      readFully(fd, headerBuf, 8);
      let header: unknown;
      try {
        header = JSON.parse(headerBuf.toString('utf8'));
      } catch (err) {
        throw new CheckpointError('bad_header', file, 'header is not valid JSON', { cause: err });
      }
      return SafetensorsFile.fromHeader(file, header, 8 + n, size);
    } finally {
      fs.closeSync(fd);
    }
  }

  private static fromHeader(file: string, header: unknown, dataStart: number, size: number): SafetensorsFile {
    if (!isRecord(header)) throw new CheckpointError('bad_header', file, 'header is not a JSON object');
    const metadata: Record<string, string> = {};
    const entries = new Map<string, TensorInfo>();
    for (const [name, raw] of Object.entries(header)) {
      if (name === '__metadata__') {
        if (raw === null) continue;
        if (!isRecord(raw)) throw new CheckpointError('bad_header', file, '__metadata__ is not an object');
        for (const [k, v] of Object.entries(raw)) {
          if (typeof v !== 'string') throw new CheckpointError('bad_header', file, `__metadata__.${k} is not a string`);
          metadata[k] = v;
        }
        continue;
      }
      if (!isRecord(raw)) throw new CheckpointError('bad_header', file, `tensor ${name}: entry is not an object`);
      const { dtype, shape, data_offsets: offsets } = raw;
      if (typeof dtype !== 'string') throw new CheckpointError('bad_header', file, `tensor ${name}: dtype is missing`);
      if (!Array.isArray(shape) || !shape.every(isNonNegativeInt)) {
        throw new CheckpointError('bad_header', file, `tensor ${name}: shape ${JSON.stringify(shape)} is not a list of non-negative integers`);
      }
      const begin: unknown = Array.isArray(offsets) ? offsets[0] : undefined;
      const end: unknown = Array.isArray(offsets) ? offsets[1] : undefined;
      if (!Array.isArray(offsets) || offsets.length !== 2 || !isNonNegativeInt(begin) || !isNonNegativeInt(end) || begin > end) {
        throw new CheckpointError('bad_header', file, `tensor ${name}: data_offsets ${JSON.stringify(offsets)} is not [begin, end]`);
      }
      const elemBytes = isStorageDtype(dtype) ? DTYPE_BYTES[dtype] : OTHER_DTYPE_BYTES[dtype];
      if (elemBytes !== undefined) {
        const numel = shape.reduce((a, b) => a * b, 1);
        if (end - begin !== numel * elemBytes) {
          throw new CheckpointError(
            'bad_header',
            file,
            `tensor ${name}: ${end - begin} data bytes do not match ${dtype} shape [${shape.join(', ')}] (${numel * elemBytes} bytes)`,
          );
        }
      }
      if (dataStart + end > size) {
        throw new CheckpointError(
          'truncated',
          file,
          `tensor ${name}: data ends at byte ${dataStart + end} but the file has only ${size} bytes (truncated download?)`,
        );
      }
      entries.set(name, { name, dtype, shape: shape, file, offset: dataStart + begin, byteLength: end - begin });
    }
    return new SafetensorsFile(file, metadata, entries);
  }

  names(): readonly string[] {
    return [...this.entries.keys()];
  }

  has(name: string): boolean {
    return this.entries.has(name);
  }

  info(name: string): TensorInfo {
    const entry = this.entries.get(name);
    if (entry === undefined) throw new CheckpointError('missing_tensor', this.path, `tensor ${name} is not in this file`);
    return entry;
  }

  get(name: string): WeightTensor {
    return readTensor(this.info(name));
  }
}

function readTensor(entry: TensorInfo): WeightTensor {
  const { dtype, file, name } = entry;
  if (!isStorageDtype(dtype)) {
    throw new CheckpointError('unknown_dtype', file, `tensor ${name}: dtype ${dtype} is not supported (supported: ${STORAGE_DTYPES.join(', ')})`);
  }
  const numel = entry.byteLength / DTYPE_BYTES[dtype];
  const data = new Float32Array(numel);
  const raw = dtype === 'F32' ? new Uint8Array(data.buffer) : new Uint8Array(entry.byteLength);
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch (err) {
    throw new CheckpointError('missing_file', file, `cannot open to read tensor ${name}`, { cause: err });
  }
  try {
    const got = readFully(fd, raw, entry.offset);
    if (got !== raw.length) {
      throw new CheckpointError('truncated', file, `tensor ${name}: read ${got} of ${raw.length} bytes (file shrank?)`);
    }
  } finally {
    fs.closeSync(fd);
  }
  if (dtype !== 'F32') {
    const halves = new Uint16Array(raw.buffer, raw.byteOffset, numel);
    if (dtype === 'F16') f16ToF32Array(halves, data);
    else bf16ToF32Array(halves, data);
  }
  return { shape: entry.shape, data };
}

/** The tensors of a sharded checkpoint, routed through model.safetensors.index.json's weight_map. */
class ShardedWeights implements CheckpointWeights {
  readonly files: readonly string[];
  private readonly route: Map<string, SafetensorsFile>;

  constructor(indexFile: string) {
    let index: unknown;
    try {
      index = JSON.parse(fs.readFileSync(indexFile, 'utf8'));
    } catch (err) {
      throw new CheckpointError('bad_header', indexFile, 'cannot read the shard index as JSON', { cause: err });
    }
    if (!isRecord(index) || !isRecord(index.weight_map)) {
      throw new CheckpointError('bad_header', indexFile, 'weight_map is missing or not an object');
    }
    const dir = path.dirname(indexFile);
    const shards = new Map<string, SafetensorsFile>();
    this.route = new Map();
    for (const [name, shard] of Object.entries(index.weight_map)) {
      if (typeof shard !== 'string' || shard.includes('/') || shard.includes('\\')) {
        throw new CheckpointError('bad_header', indexFile, `weight_map[${name}] is not a file name in this directory`);
      }
      let file = shards.get(shard);
      if (file === undefined) {
        const shardPath = path.join(dir, shard);
        if (!fs.existsSync(shardPath)) {
          throw new CheckpointError('missing_file', shardPath, `shard listed in ${indexFile} (for tensor ${name}) does not exist`);
        }
        file = SafetensorsFile.open(shardPath);
        shards.set(shard, file);
      }
      if (!file.has(name)) {
        throw new CheckpointError('missing_tensor', file.path, `tensor ${name} is listed in ${indexFile} but not in this shard`);
      }
      this.route.set(name, file);
    }
    this.files = [...shards.keys()].sort().map((s) => path.join(dir, s));
  }

  names(): readonly string[] {
    return [...this.route.keys()];
  }

  has(name: string): boolean {
    return this.route.has(name);
  }

  info(name: string): TensorInfo {
    const file = this.route.get(name);
    if (file === undefined) throw new CheckpointError('missing_tensor', this.files[0] ?? '(no shards)', `tensor ${name} is not in the checkpoint`);
    return file.info(name);
  }

  get(name: string): WeightTensor {
    return readTensor(this.info(name));
  }
}

export const SINGLE_FILE = 'model.safetensors';
export const SHARD_INDEX = 'model.safetensors.index.json';

/** Opens model.safetensors, or the shards named by model.safetensors.index.json. */
export function openWeights(dir: string): CheckpointWeights {
  const single = path.join(dir, SINGLE_FILE);
  if (fs.existsSync(single)) return SafetensorsFile.open(single);
  const index = path.join(dir, SHARD_INDEX);
  if (fs.existsSync(index)) return new ShardedWeights(index);
  const hint = fs.existsSync(path.join(dir, 'pytorch_model.bin'))
    ? ' (found pytorch_model.bin: only safetensors checkpoints are supported; convert it first)'
    : '';
  throw new CheckpointError('missing_file', single, `no weights: neither ${SINGLE_FILE} nor ${SHARD_INDEX} exists in ${dir}${hint}`);
}
