/**
 * A small, dependency-free ONNX writer: hand-encoded protobuf for the handful of messages a
 * model file needs (ModelProto, GraphProto, NodeProto, TensorProto, ValueInfoProto,
 * AttributeProto). Field numbers follow onnx/onnx.proto (IR version 8).
 *
 * The output is a pure function of the input (fields are written in a fixed order, maps are
 * never iterated in insertion-dependent ways), so the same model gives the same bytes.
 */

/** A dimension: a fixed size, or a symbolic name such as "N" (written as dim_param). */
export type Dim = number | string;

export type TensorData =
  | { type: 'float'; values: Float32Array }
  | { type: 'int64'; values: readonly number[] }
  | { type: 'int32'; values: readonly number[] };

export interface Tensor {
  name: string;
  dims: readonly number[];
  data: TensorData;
}

export type AttrValue =
  | { kind: 'int'; value: number }
  | { kind: 'float'; value: number }
  | { kind: 'string'; value: string }
  | { kind: 'ints'; value: readonly number[] }
  | { kind: 'floats'; value: readonly number[] }
  | { kind: 'tensor'; value: Tensor };

/** Attribute constructors, so an int is never mistaken for a float. */
export const attr = {
  int: (value: number): AttrValue => ({ kind: 'int', value }),
  float: (value: number): AttrValue => ({ kind: 'float', value }),
  string: (value: string): AttrValue => ({ kind: 'string', value }),
  ints: (value: readonly number[]): AttrValue => ({ kind: 'ints', value }),
  floats: (value: readonly number[]): AttrValue => ({ kind: 'floats', value }),
  tensor: (value: Tensor): AttrValue => ({ kind: 'tensor', value }),
};

export interface Node {
  opType: string;
  inputs: readonly string[];
  outputs: readonly string[];
  name?: string;
  /** Written sorted by name, so callers need not care about key order. */
  attributes?: Record<string, AttrValue>;
}

export interface ValueInfo {
  name: string;
  /** Element type of the tensor; only float32 graph inputs/outputs are needed here. */
  elemType?: 'float';
  dims: readonly Dim[];
}

export interface Graph {
  name: string;
  nodes: readonly Node[];
  initializers: readonly Tensor[];
  inputs: readonly ValueInfo[];
  outputs: readonly ValueInfo[];
}

export interface Model {
  graph: Graph;
  /** Default opset 13. */
  opset?: number;
  producerName?: string;
  producerVersion?: string;
  docString?: string;
  /** Written sorted by key. */
  metadata?: Record<string, string>;
}

const DATA_TYPE = { float: 1, int32: 6, int64: 7 } as const;
const ATTR_TYPE = { float: 1, int: 2, string: 3, tensor: 4, floats: 6, ints: 7 } as const;

/** Protobuf wire encoder: appends to growable chunks, then concatenates once. */
class PbWriter {
  private chunks: Uint8Array[] = [];
  private scratch: number[] = [];

  private flushScratch(): void {
    if (this.scratch.length > 0) {
      this.chunks.push(Uint8Array.from(this.scratch));
      this.scratch = [];
    }
  }

  private varint(v: number | bigint): void {
    let x = BigInt.asUintN(64, BigInt(v));
    if (typeof v === 'number' && !Number.isSafeInteger(v)) throw new Error(`onnx-writer: ${v} is not an integer`);
    while (x >= 0x80n) {
      this.scratch.push(Number(x & 0x7fn) | 0x80);
      x >>= 7n;
    }
    this.scratch.push(Number(x));
  }

  private tag(field: number, wire: number): void {
    this.varint((field << 3) | wire);
  }

  int(field: number, v: number): void {
    this.tag(field, 0);
    this.varint(v);
  }

  float(field: number, v: number): void {
    this.tag(field, 5);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, v, true);
    this.scratch.push(...b);
  }

  bytes(field: number, data: Uint8Array): void {
    this.tag(field, 2);
    this.varint(data.length);
    this.flushScratch();
    this.chunks.push(data);
  }

  string(field: number, s: string): void {
    this.bytes(field, new TextEncoder().encode(s));
  }

  message(field: number, build: (w: PbWriter) => void): void {
    const inner = new PbWriter();
    build(inner);
    this.bytes(field, inner.finish());
  }

  packedInts(field: number, values: readonly number[]): void {
    const inner = new PbWriter();
    for (const v of values) inner.varint(v);
    this.bytes(field, inner.finish());
  }

  packedFloats(field: number, values: readonly number[]): void {
    const b = new Uint8Array(values.length * 4);
    const dv = new DataView(b.buffer);
    values.forEach((v, i) => dv.setFloat32(i * 4, v, true));
    this.bytes(field, b);
  }

  finish(): Uint8Array {
    this.flushScratch();
    const total = this.chunks.reduce((s, c) => s + c.length, 0);
    const out = new Uint8Array(total);
    let off = 0;
    for (const c of this.chunks) {
      out.set(c, off);
      off += c.length;
    }
    return out;
  }
}

function rawBytes(data: TensorData): Uint8Array {
  if (data.type === 'float') {
    const out = new Uint8Array(data.values.length * 4);
    const dv = new DataView(out.buffer);
    data.values.forEach((v, i) => dv.setFloat32(i * 4, v, true));
    return out;
  }
  const width = data.type === 'int64' ? 8 : 4;
  const out = new Uint8Array(data.values.length * width);
  const dv = new DataView(out.buffer);
  data.values.forEach((v, i) => {
    if (width === 8) dv.setBigInt64(i * 8, BigInt(v), true);
    else dv.setInt32(i * 4, v, true);
  });
  return out;
}

function writeTensor(w: PbWriter, t: Tensor): void {
  const expected = t.dims.reduce((a, b) => a * b, 1);
  if (expected !== t.data.values.length) {
    throw new Error(`onnx-writer: tensor ${t.name} has ${t.data.values.length} values for dims [${t.dims}]`);
  }
  for (const d of t.dims) w.int(1, d);
  w.int(2, DATA_TYPE[t.data.type]);
  w.string(8, t.name);
  w.bytes(9, rawBytes(t.data));
}

function writeAttribute(w: PbWriter, name: string, a: AttrValue): void {
  w.string(1, name);
  switch (a.kind) {
    case 'float': w.float(2, a.value); break;
    case 'int': w.int(3, a.value); break;
    case 'string': w.string(4, a.value); break;
    case 'tensor': w.message(5, (t) => writeTensor(t, a.value)); break;
    case 'floats': for (const v of a.value) w.float(7, v); break;
    case 'ints': for (const v of a.value) w.int(8, v); break;
  }
  w.int(20, ATTR_TYPE[a.kind]);
}

function writeNode(w: PbWriter, n: Node): void {
  for (const i of n.inputs) w.string(1, i);
  for (const o of n.outputs) w.string(2, o);
  if (n.name) w.string(3, n.name);
  w.string(4, n.opType);
  const attrs = n.attributes ?? {};
  for (const key of Object.keys(attrs).sort()) w.message(5, (a) => writeAttribute(a, key, attrs[key]!));
}

function writeValueInfo(w: PbWriter, v: ValueInfo): void {
  w.string(1, v.name);
  w.message(2, (type) =>
    type.message(1, (tensor) => {
      tensor.int(1, DATA_TYPE[v.elemType ?? 'float']);
      tensor.message(2, (shape) => {
        for (const d of v.dims) {
          shape.message(1, (dim) => (typeof d === 'number' ? dim.int(1, d) : dim.string(2, d)));
        }
      });
    }),
  );
}

function writeGraph(w: PbWriter, g: Graph): void {
  for (const n of g.nodes) w.message(1, (m) => writeNode(m, n));
  w.string(2, g.name);
  for (const t of g.initializers) w.message(5, (m) => writeTensor(m, t));
  for (const v of g.inputs) w.message(11, (m) => writeValueInfo(m, v));
  for (const v of g.outputs) w.message(12, (m) => writeValueInfo(m, v));
}

/** Encodes a model as ONNX protobuf bytes (IR version 8, default opset 13). */
export function encodeModel(model: Model): Uint8Array {
  const w = new PbWriter();
  w.int(1, 8);
  w.string(2, model.producerName ?? 'improve-cloud-mask');
  w.string(3, model.producerVersion ?? '1');
  if (model.docString) w.string(6, model.docString);
  w.message(7, (g) => writeGraph(g, model.graph));
  w.message(8, (op) => {
    op.string(1, '');
    op.int(2, model.opset ?? 13);
  });
  const meta = model.metadata ?? {};
  for (const key of Object.keys(meta).sort()) {
    w.message(14, (e) => {
      e.string(1, key);
      e.string(2, meta[key]!);
    });
  }
  return w.finish();
}

/** Helper for building graphs: unique names, initializers, nodes, in one place. */
export class GraphBuilder {
  readonly nodes: Node[] = [];
  readonly initializers: Tensor[] = [];
  private counter = 0;

  /** A fresh value name with the given prefix. */
  fresh(prefix: string): string {
    this.counter += 1;
    return `${prefix}_${this.counter}`;
  }

  floatInit(name: string, dims: readonly number[], values: ArrayLike<number>): string {
    this.initializers.push({ name, dims, data: { type: 'float', values: Float32Array.from(values) } });
    return name;
  }

  int64Init(name: string, dims: readonly number[], values: readonly number[]): string {
    this.initializers.push({ name, dims, data: { type: 'int64', values } });
    return name;
  }

  /** Adds a node with one output and returns the output's name. */
  op(opType: string, inputs: readonly string[], attributes?: Record<string, AttrValue>, output?: string): string {
    const out = output ?? this.fresh(opType.toLowerCase());
    this.nodes.push({ opType, inputs, outputs: [out], name: `${out}_node`, attributes });
    return out;
  }

  build(name: string, inputs: readonly ValueInfo[], outputs: readonly ValueInfo[]): Graph {
    return { name, nodes: this.nodes, initializers: this.initializers, inputs, outputs };
  }
}
