/**
 * Typed, named access to a config.json object for the Hugging Face config parser: every value
 * checked and every failure a CheckpointError naming the file and the key.
 */
import { CheckpointError } from './errors.js';

export type Json = Record<string, unknown>;

export function isRecord(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export class Fields {
  constructor(
    private readonly obj: Json,
    private readonly file: string,
    private readonly prefix = '',
  ) {}

  error(field: string, why: string): CheckpointError {
    return this.bad(field, why);
  }

  private bad(field: string, why: string): CheckpointError {
    return new CheckpointError('bad_config', this.file, `${this.prefix}${field} ${why}`);
  }

  has(field: string): boolean {
    return this.obj[field] !== undefined && this.obj[field] !== null;
  }

  positiveInt(field: string, fallback?: number): number {
    const v = this.obj[field];
    if (v === undefined || v === null) {
      if (fallback !== undefined) return fallback;
      throw this.bad(field, 'is required but missing');
    }
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) throw this.bad(field, `must be a positive integer, got ${JSON.stringify(v)}`);
    return v;
  }

  nonNegativeInt(field: string, fallback: number): number {
    const v = this.obj[field];
    if (v === undefined || v === null) return fallback;
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw this.bad(field, `must be a non-negative integer, got ${JSON.stringify(v)}`);
    return v;
  }

  positiveNumber(field: string, fallback?: number): number {
    const v = this.obj[field];
    if (v === undefined || v === null) {
      if (fallback !== undefined) return fallback;
      throw this.bad(field, 'is required but missing');
    }
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw this.bad(field, `must be a positive number, got ${JSON.stringify(v)}`);
    return v;
  }

  bool(field: string, fallback: boolean): boolean {
    const v = this.obj[field];
    if (v === undefined || v === null) return fallback;
    if (typeof v !== 'boolean') throw this.bad(field, `must be true or false, got ${JSON.stringify(v)}`);
    return v;
  }

  /** A token id or list of ids; undefined when absent, [] when null. */
  intList(field: string): number[] {
    const v = this.obj[field];
    if (v === undefined || v === null) return [];
    if (!Array.isArray(v) || v.some((x) => typeof x !== 'number' || !Number.isSafeInteger(x) || x < 0)) {
      throw this.bad(field, `must be a list of non-negative integers, got ${JSON.stringify(v)}`);
    }
    return v as number[];
  }

  /** A list of finite numbers of the given length (RoPE factors). */
  numberList(field: string, length: number): number[] {
    const v = this.obj[field];
    if (v === undefined || v === null) throw this.bad(field, 'is required but missing');
    if (!Array.isArray(v) || v.some((x) => typeof x !== 'number' || !Number.isFinite(x) || x <= 0)) {
      throw this.bad(field, `must be a list of positive numbers, got ${JSON.stringify(v)}`);
    }
    if (v.length !== length) throw this.bad(field, `must have ${length} values (rotary dimensions / 2), got ${v.length}`);
    return v as number[];
  }

  tokenIds(field: string): number[] | undefined {
    const v = this.obj[field];
    if (v === undefined) return undefined;
    if (v === null) return [];
    const list = Array.isArray(v) ? v : [v];
    for (const id of list) {
      if (typeof id !== 'number' || !Number.isSafeInteger(id) || id < 0)
        throw this.bad(field, `must be a token id or a list of token ids, got ${JSON.stringify(v)}`);
    }
    return list as number[];
  }
}
