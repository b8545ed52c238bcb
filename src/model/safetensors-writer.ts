/**
 * safetensors writer that streams one tensor at a time: the header is computed from
 * the declared shapes, then each tensor's data is appended as it is produced, so a
 * generator never holds the whole checkpoint in memory.
 */
import fs from 'node:fs';
import { DTYPE_BYTES, f32ToBf16Array, f32ToF16Array, type StorageDtype } from './dtype.js';

export interface TensorDeclaration {
  readonly name: string;
  readonly shape: readonly number[];
}

function numelOf(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

function writeAll(fd: number, bytes: Uint8Array): void {
  let done = 0;
  while (done < bytes.length) done += fs.writeSync(fd, bytes, done, bytes.length - done);
}

export class SafetensorsWriter {
  private readonly fd: number;
  private readonly order: readonly TensorDeclaration[];
  private readonly dtype: StorageDtype;
  private next = 0;

  /** Tensors must later be written in exactly the declared order. */
  constructor(file: string, tensors: readonly TensorDeclaration[], dtype: StorageDtype, metadata?: Readonly<Record<string, string>>) {
    const seen = new Set<string>();
    const header: Record<string, unknown> = {};
    if (metadata !== undefined && Object.keys(metadata).length > 0) header.__metadata__ = { ...metadata };
    let offset = 0;
    for (const t of tensors) {
      if (t.name === '__metadata__' || seen.has(t.name)) throw new Error(`safetensors: duplicate or reserved tensor name ${t.name}`);
      if (!t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
        throw new Error(`safetensors: tensor ${t.name} has invalid shape [${t.shape.join(', ')}]`);
      }
      seen.add(t.name);
      const bytes = numelOf(t.shape) * DTYPE_BYTES[dtype];
      header[t.name] = { dtype, shape: [...t.shape], data_offsets: [offset, offset + bytes] };
      offset += bytes;
    }
    let json = JSON.stringify(header);
    // The reference implementation pads the header with spaces so the data starts 8-byte aligned.
    json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8);
    const headerBytes = Buffer.from(json, 'utf8');
    const prefix = Buffer.alloc(8);
    prefix.writeBigUInt64LE(BigInt(headerBytes.length), 0);
    this.fd = fs.openSync(file, 'w');
    this.order = tensors;
    this.dtype = dtype;
    writeAll(this.fd, prefix);
    writeAll(this.fd, headerBytes);
  }

  write(name: string, data: Float32Array): void {
    const decl = this.order[this.next];
    if (decl === undefined || decl.name !== name) {
      throw new Error(`safetensors: expected tensor ${decl?.name ?? '(none left)'} next, got ${name}`);
    }
    if (data.length !== numelOf(decl.shape)) {
      throw new Error(`safetensors: tensor ${name} has ${data.length} values, shape [${decl.shape.join(', ')}] needs ${numelOf(decl.shape)}`);
    }
    if (this.dtype === 'F32') {
      writeAll(this.fd, new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    } else {
      const halves = new Uint16Array(data.length);
      if (this.dtype === 'F16') f32ToF16Array(data, halves);
      else f32ToBf16Array(data, halves);
      writeAll(this.fd, new Uint8Array(halves.buffer));
    }
    this.next++;
  }

  /** Closes the file after a failure without complaining about unwritten tensors. */
  abort(): void {
    fs.closeSync(this.fd);
  }

  close(): void {
    const missing = this.order.length - this.next;
    fs.closeSync(this.fd);
    if (missing > 0) throw new Error(`safetensors: closed with ${missing} declared tensors not written`);
  }
}

/** Writes all tensors at once, sorted by name so the same tensors always give the same bytes. */
export function writeSafetensors(
  file: string,
  tensors: ReadonlyMap<string, { readonly shape: readonly number[]; readonly data: Float32Array }>,
  dtype: StorageDtype,
  metadata?: Readonly<Record<string, string>>,
): void {
  const names = [...tensors.keys()].sort();
  const writer = new SafetensorsWriter(
    file,
    names.map((name) => ({ name, shape: tensors.get(name)!.shape })),
    dtype,
    metadata,
  );
  try {
    for (const name of names) writer.write(name, tensors.get(name)!.data);
  } catch (err) {
    writer.abort();
    throw err;
  }
  writer.close();
}
