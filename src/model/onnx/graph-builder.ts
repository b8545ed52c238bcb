/**
 * Builds an ONNX ModelProto in TypeScript. Large initializers go to an external
 * data file (ONNX external-data convention), so graphs over multi-GB weights stay
 * under protobuf's 2 GB limit and several graphs can share one weight file.
 * Control flow (If) takes subgraphs built by `subgraph()`, which share the
 * parent's name counter so every value name stays unique across scopes.
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import { ProtoWriter } from './protobuf-writer.js';

export type OnnxDType = 'float32' | 'uint8' | 'int8' | 'int32' | 'int64' | 'bool' | 'float16';

const DTYPE_CODE: Record<OnnxDType, number> = {
  float32: 1,
  uint8: 2,
  int8: 3,
  int32: 6,
  int64: 7,
  bool: 9,
  float16: 10,
};

export type AttrValue =
  | { readonly kind: 'int'; readonly value: number }
  | { readonly kind: 'float'; readonly value: number }
  | { readonly kind: 'ints'; readonly value: readonly number[] }
  | { readonly kind: 'floats'; readonly value: readonly number[] }
  | { readonly kind: 'string'; readonly value: string }
  | { readonly kind: 'graph'; readonly value: GraphBuilder };

export const attr = {
  int: (value: number): AttrValue => ({ kind: 'int', value }),
  float: (value: number): AttrValue => ({ kind: 'float', value }),
  ints: (value: readonly number[]): AttrValue => ({ kind: 'ints', value }),
  floats: (value: readonly number[]): AttrValue => ({ kind: 'floats', value }),
  string: (value: string): AttrValue => ({ kind: 'string', value }),
  graph: (value: GraphBuilder): AttrValue => ({ kind: 'graph', value }),
};

export type Dim = number | string;

type TensorBytes = Float32Array | Uint8Array | Int8Array | Int32Array | BigInt64Array | Uint16Array;

/** Appends tensor bytes to one file and remembers where each went. */
export class ExternalDataFile {
  private readonly fd: number;
  private offset = 0;

  constructor(
    readonly path: string,
    /** The name the .onnx files use to refer to it (relative to the model file). */
    readonly location: string,
  ) {
    this.fd = openSync(path, 'w');
  }

  append(bytes: Uint8Array): { offset: number; length: number } {
    // 64-byte alignment lets onnxruntime map tensors without realigning.
    const pad = (64 - (this.offset % 64)) % 64;
    if (pad > 0) {
      writeSync(this.fd, new Uint8Array(pad));
      this.offset += pad;
    }
    const at = this.offset;
    let written = 0;
    while (written < bytes.length) {
      written += writeSync(this.fd, bytes, written, bytes.length - written);
    }
    this.offset += bytes.length;
    return { offset: at, length: bytes.length };
  }

  close(): void {
    closeSync(this.fd);
  }
}

/** An initializer already written to an external file, reusable by several graphs. */
export interface StoredTensor {
  readonly dtype: OnnxDType;
  readonly dims: readonly number[];
  readonly location: string;
  readonly offset: number;
  readonly length: number;
}

export function storeTensor(file: ExternalDataFile, dtype: OnnxDType, dims: readonly number[], data: TensorBytes): StoredTensor {
  const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  const { offset, length } = file.append(bytes);
  return { dtype, dims: [...dims], location: file.location, offset, length };
}

function tensorProto(name: string, dtype: OnnxDType, dims: readonly number[]): ProtoWriter {
  const t = new ProtoWriter();
  t.packedInts(1, dims);
  t.int(2, DTYPE_CODE[dtype]);
  t.string(8, name);
  return t;
}

function valueInfo(name: string, dtype: OnnxDType, dims: readonly Dim[]): ProtoWriter {
  const shape = new ProtoWriter();
  for (const d of dims) {
    const dim = new ProtoWriter();
    if (typeof d === 'number') dim.int(1, d);
    else dim.string(2, d);
    shape.message(1, dim);
  }
  const tensorType = new ProtoWriter().int(1, DTYPE_CODE[dtype]).message(2, shape);
  const type = new ProtoWriter().message(1, tensorType);
  return new ProtoWriter().string(1, name).message(2, type);
}

function attributeProto(name: string, value: AttrValue): ProtoWriter {
  const a = new ProtoWriter().string(1, name);
  switch (value.kind) {
    case 'int':
      a.int(3, value.value).int(20, 2);
      break;
    case 'float':
      a.float(2, value.value).int(20, 1);
      break;
    case 'ints':
      a.packedInts(8, value.value).int(20, 7);
      break;
    case 'floats':
      a.packedFloats(7, value.value).int(20, 6);
      break;
    case 'string':
      a.string(4, value.value).int(20, 3);
      break;
    case 'graph':
      a.message(6, value.value.graphProto()).int(20, 5);
      break;
  }
  return a;
}

/** Shared by a graph and its subgraphs: one name counter, one set of operator domains. */
interface BuilderScope {
  counter: number;
  readonly usedDomains: Set<string>;
}

export class GraphBuilder {
  private readonly nodes: ProtoWriter[] = [];
  private readonly initializers: ProtoWriter[] = [];
  private readonly inputs: ProtoWriter[] = [];
  private readonly outputs: ProtoWriter[] = [];
  private readonly scope: BuilderScope;

  constructor(
    readonly name: string,
    scope?: BuilderScope,
  ) {
    this.scope = scope ?? { counter: 0, usedDomains: new Set<string>() };
  }

  /** A graph for a control-flow attribute (If's branches); it may read any value of its enclosing graphs. */
  subgraph(hint: string): GraphBuilder {
    return new GraphBuilder(this.fresh(hint), this.scope);
  }

  private fresh(hint: string): string {
    this.scope.counter += 1;
    return `${hint}_${this.scope.counter}`;
  }

  input(name: string, dtype: OnnxDType, dims: readonly Dim[]): string {
    this.inputs.push(valueInfo(name, dtype, dims));
    return name;
  }

  output(name: string, dtype: OnnxDType, dims: readonly Dim[]): void {
    this.outputs.push(valueInfo(name, dtype, dims));
  }

  /** A small constant embedded in the graph itself. */
  constant(dtype: OnnxDType, dims: readonly number[], data: TensorBytes, hint = 'const'): string {
    const name = this.fresh(hint);
    const t = tensorProto(name, dtype, dims);
    t.bytes(9, new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    this.initializers.push(t);
    return name;
  }

  int64s(values: readonly number[], hint = 'i64'): string {
    return this.constant('int64', [values.length], BigInt64Array.from(values.map((v) => BigInt(v))), hint);
  }

  scalarF32(value: number, hint = 'f32'): string {
    return this.constant('float32', [], Float32Array.of(value), hint);
  }

  /** An initializer whose bytes live in an external data file. */
  external(name: string, stored: StoredTensor): string {
    const t = tensorProto(name, stored.dtype, stored.dims);
    const entry = (k: string, v: string): ProtoWriter => new ProtoWriter().string(1, k).string(2, v);
    t.message(13, entry('location', stored.location));
    t.message(13, entry('offset', String(stored.offset)));
    t.message(13, entry('length', String(stored.length)));
    t.int(14, 1);
    this.initializers.push(t);
    return name;
  }

  node(
    op: string,
    inputs: readonly string[],
    attrs: Readonly<Record<string, AttrValue>> = {},
    options: { domain?: string; outputs?: readonly string[]; name?: string } = {},
  ): string[] {
    const outs = options.outputs ? [...options.outputs] : [this.fresh(op.toLowerCase())];
    const n = new ProtoWriter();
    for (const i of inputs) n.string(1, i);
    for (const o of outs) n.string(2, o);
    n.string(3, options.name ?? this.fresh(`n_${op}`));
    n.string(4, op);
    for (const [k, v] of Object.entries(attrs)) n.message(5, attributeProto(k, v));
    if (options.domain) {
      n.string(7, options.domain);
      this.scope.usedDomains.add(options.domain);
    }
    this.nodes.push(n);
    return outs;
  }

  /** Single-output convenience. */
  op(op: string, inputs: readonly string[], attrs: Readonly<Record<string, AttrValue>> = {}, domain?: string): string {
    const [out] = this.node(op, inputs, attrs, domain ? { domain } : {});
    if (out === undefined) throw new Error('unreachable: node without output');
    return out;
  }

  /** This graph as a GraphProto (the model's main graph or a control-flow branch). */
  graphProto(): ProtoWriter {
    const graph = new ProtoWriter();
    for (const n of this.nodes) graph.message(1, n);
    graph.string(2, this.name);
    for (const t of this.initializers) graph.message(5, t);
    for (const i of this.inputs) graph.message(11, i);
    for (const o of this.outputs) graph.message(12, o);
    return graph;
  }

  toModelBytes(opset = 17): Uint8Array {
    const graph = this.graphProto();
    const model = new ProtoWriter();
    model.int(1, 8); // IR version 8 (onnx 1.13+), supported by onnxruntime >= 1.14
    model.message(8, new ProtoWriter().string(1, '').int(2, opset));
    for (const d of this.scope.usedDomains) model.message(8, new ProtoWriter().string(1, d).int(2, 1));
    model.string(2, 'capserve');
    model.string(3, '0.1.0');
    model.message(7, graph);
    return model.finish();
  }
}
