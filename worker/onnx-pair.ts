/**
 * Two ONNX models as one: the cloud and the shadow model side by side in one graph, every name
 * prefixed ("cloud/", "shadow/"), so a chip thread holds one onnxruntime session instead of two.
 * onnxruntime keeps a memory arena per session, sized by the largest intermediate tensors of its
 * model (about 143 MB for a session of the previous default models at 512x512): within one
 * session the shadow branch reuses what the cloud branch freed, and a chip takes one run instead
 * of two.
 *
 * When both models take the same input (their manifests scale the DN alike), the merged graph has
 * one input feeding both, so a chip is passed once and onnxruntime's common subexpression
 * elimination computes the nodes the two graphs share (identical operators on identical
 * constants, e.g. the bundled models' band selection and 3x3 mean) once for both.
 *
 * Only the protobuf fields that carry names are decoded; everything else is copied byte for byte.
 * Models this cannot merge faithfully (different operator sets, subgraphs in If/Loop nodes,
 * external or sparse tensors, model-local functions) are refused with the reason, and the caller
 * falls back to two sessions.
 */

/** One protobuf field: its number, wire type, encoded bytes (tag included) and, for wire type 2, its payload. */
interface Field {
  no: number;
  wire: number;
  raw: Uint8Array;
  payload: Uint8Array;
  /** Wire type 0: the value. */
  value: number;
}

export class PairMergeError extends Error {}

function readVarint(buf: Uint8Array, pos: number): [number, number] {
  let value = 0;
  let scale = 1;
  for (let i = 0; i < 10; i++) {
    if (pos >= buf.length) throw new PairMergeError('truncated varint');
    const b = buf[pos++]!;
    value += (b & 0x7f) * scale;
    if (b < 0x80) return [value, pos];
    scale *= 128;
  }
  throw new PairMergeError('varint longer than 10 bytes');
}

function parse(buf: Uint8Array): Field[] {
  const fields: Field[] = [];
  let pos = 0;
  while (pos < buf.length) {
    const start = pos;
    const [tag, p1] = readVarint(buf, pos);
    const no = Math.floor(tag / 8);
    const wire = tag % 8;
    pos = p1;
    let payload = buf.subarray(pos, pos);
    let value = 0;
    if (wire === 0) [value, pos] = readVarint(buf, pos);
    else if (wire === 1) pos += 8;
    else if (wire === 5) pos += 4;
    else if (wire === 2) {
      const [len, p2] = readVarint(buf, pos);
      payload = buf.subarray(p2, p2 + len);
      pos = p2 + len;
    } else throw new PairMergeError(`unsupported protobuf wire type ${wire}`);
    if (pos > buf.length || no === 0) throw new PairMergeError('malformed protobuf');
    fields.push({ no, wire, raw: buf.subarray(start, pos), payload, value });
  }
  return fields;
}

function varint(n: number): number[] {
  const out: number[] = [];
  while (n >= 0x80) {
    out.push((n % 128) | 0x80);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return out;
}

function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

function lenField(no: number, payload: Uint8Array): Uint8Array {
  return concat([Uint8Array.from([...varint(no * 8 + 2), ...varint(payload.length)]), payload]);
}

function varintField(no: number, value: number): Uint8Array {
  return Uint8Array.from([...varint(no * 8), ...varint(value)]);
}

const utf8 = new TextDecoder('utf-8', { fatal: true });
const enc = new TextEncoder();
const text = (f: Field): string => utf8.decode(f.payload);

/** Rewrites the string fields `names` of a message with `rename`; refuses `forbidden` fields. */
function renameFields(msg: Uint8Array, names: readonly number[], rename: (s: string) => string, forbidden: Record<number, string> = {}): Uint8Array {
  return concat(
    parse(msg).map((f) => {
      if (forbidden[f.no]) throw new PairMergeError(forbidden[f.no]);
      return names.includes(f.no) && f.wire === 2 ? lenField(f.no, enc.encode(rename(text(f)))) : f.raw;
    }),
  );
}

const NODE = { input: 1, output: 2, name: 3, attribute: 5 } as const;
const ATTRIBUTE = { g: 6, graphs: 11 } as const;
const TENSOR = { name: 8, externalData: 13, dataLocation: 14 } as const;
const GRAPH = { node: 1, name: 2, initializer: 5, docString: 10, input: 11, output: 12, valueInfo: 13, quantization: 14, sparseInitializer: 15 } as const;
const MODEL = { irVersion: 1, opsetImport: 8, graph: 7, metadataProps: 14, trainingInfo: 20, functions: 25 } as const;

function renameNode(node: Uint8Array, prefix: (s: string) => string): Uint8Array {
  return concat(
    parse(node).map((f) => {
      if (f.no === NODE.attribute) {
        const sub = parse(f.payload).find((a) => a.no === ATTRIBUTE.g || a.no === ATTRIBUTE.graphs);
        if (sub) throw new PairMergeError('a node holds a subgraph (If, Loop, Scan)');
        return f.raw;
      }
      if ((f.no === NODE.input || f.no === NODE.output || f.no === NODE.name) && f.wire === 2) {
        // Empty names stand for omitted optional inputs: they stay empty.
        return lenField(f.no, enc.encode(text(f) === '' ? '' : prefix(text(f))));
      }
      return f.raw;
    }),
  );
}

/** One graph's fields, renamed, grouped by field number (graph name and doc dropped; graph inputs named in `dropInputs` too). */
function renameGraph(graph: Uint8Array, prefix: (s: string) => string, dropInputs: ReadonlySet<string> = new Set()): Map<number, Uint8Array[]> {
  const out = new Map<number, Uint8Array[]>();
  const add = (no: number, payload: Uint8Array): void => {
    out.set(no, [...(out.get(no) ?? []), lenField(no, payload)]);
  };
  for (const f of parse(graph)) {
    switch (f.no) {
      case GRAPH.node:
        add(f.no, renameNode(f.payload, prefix));
        break;
      case GRAPH.initializer:
        add(f.no, renameFields(f.payload, [TENSOR.name], prefix, { [TENSOR.externalData]: 'a tensor keeps its data outside the model file', [TENSOR.dataLocation]: 'a tensor keeps its data outside the model file' }));
        break;
      case GRAPH.input:
        if (!dropInputs.has(valueName(f.payload))) add(f.no, renameFields(f.payload, [1], prefix));
        break;
      case GRAPH.output:
      case GRAPH.valueInfo:
        add(f.no, renameFields(f.payload, [1], prefix));
        break;
      case GRAPH.name:
      case GRAPH.docString:
        break;
      case GRAPH.quantization:
      case GRAPH.sparseInitializer:
        throw new PairMergeError('the graph has sparse initializers or quantization annotations');
      default:
        throw new PairMergeError(`the graph has an unknown field ${f.no}`);
    }
  }
  return out;
}

/** The model's operator sets as "domain=version" strings, sorted. */
function opsets(fields: Field[]): string[] {
  return fields
    .filter((f) => f.no === MODEL.opsetImport)
    .map((f) => {
      const parts = parse(f.payload);
      const domain = parts.find((p) => p.no === 1);
      const version = parts.find((p) => p.no === 2);
      return `${domain ? text(domain) : ''}=${version?.value ?? 0}`;
    })
    .sort();
}

/** Names in the merged model: `${role}/${name}`. */
export const pairName = (role: 'cloud' | 'shadow', name: string): string => `${role}/${name}`;

/** The one input of a merged model whose two graphs share their input. */
export const SHARED_INPUT = 'cloud+shadow/input';

/** The name (field 1) of a ValueInfoProto or, with `no` 8, of a TensorProto. */
function valueName(msg: Uint8Array, no = 1): string {
  const f = parse(msg).find((x) => x.no === no && x.wire === 2);
  return f ? text(f) : '';
}

/** A graph's inputs that are not initializers (older IR versions list initializers as inputs too). */
function dataInputs(graph: Uint8Array): Field[] {
  const fields = parse(graph);
  const constants = new Set(fields.filter((f) => f.no === GRAPH.initializer).map((f) => valueName(f.payload, TENSOR.name)));
  return fields.filter((f) => f.no === GRAPH.input && !constants.has(valueName(f.payload)));
}

/** Each graph's input name, when both have exactly one and it has the same type and shape in both; else null. */
function sharableInputs(cloud: Uint8Array, shadow: Uint8Array): [string, string] | null {
  const [a, b] = [dataInputs(cloud), dataInputs(shadow)];
  if (a.length !== 1 || b.length !== 1) return null;
  const asShared = (f: Field): Uint8Array => renameFields(f.payload, [1], () => SHARED_INPUT);
  const [x, y] = [asShared(a[0]!), asShared(b[0]!)];
  if (x.length !== y.length || x.some((v, i) => v !== y[i])) return null;
  return [valueName(a[0]!.payload), valueName(b[0]!.payload)];
}

export interface MergeOptions {
  /**
   * The caller feeds both models the same tensor: give the merged graph one input (SHARED_INPUT)
   * when the two inputs have the same type and shape. Default false.
   */
  shareInput?: boolean;
}

/**
 * The two models in one ModelProto. Graph inputs, outputs, initializers and nodes keep their
 * order (cloud's first), renamed with pairName, except a shared input (see MergeOptions). Throws
 * PairMergeError when the models cannot be merged as they are.
 */
export function mergeModelPair(cloud: Uint8Array, shadow: Uint8Array, opts: MergeOptions = {}): Uint8Array {
  const models = [cloud, shadow].map((bytes) => parse(bytes));
  for (const fields of models) {
    if (fields.some((f) => f.no === MODEL.trainingInfo || f.no === MODEL.functions)) throw new PairMergeError('a model defines local functions or training info');
    if (fields.filter((f) => f.no === MODEL.graph).length !== 1) throw new PairMergeError('a model has no graph');
  }
  const [a, b] = models as [Field[], Field[]];
  if (opsets(a).join() !== opsets(b).join()) throw new PairMergeError(`the models import different operator sets (${opsets(a).join(', ')} vs ${opsets(b).join(', ')})`);
  const [gc, gs] = models.map((m) => m.find((f) => f.no === MODEL.graph)!.payload) as [Uint8Array, Uint8Array];
  const shared = opts.shareInput ? sharableInputs(gc, gs) : null;
  const rename = (role: 'cloud' | 'shadow', input: string | undefined) => (n: string): string => (n === input ? SHARED_INPUT : pairName(role, n));
  const graphs = [
    renameGraph(gc, rename('cloud', shared?.[0])),
    // The shadow graph's input is the cloud graph's: its declaration goes.
    renameGraph(gs, rename('shadow', shared?.[1]), new Set(shared ? [shared[1]] : [])),
  ];
  const order = [GRAPH.node, GRAPH.initializer, GRAPH.input, GRAPH.output, GRAPH.valueInfo];
  const graph = concat([lenField(GRAPH.name, enc.encode('cloud+shadow')), ...order.flatMap((no) => graphs.flatMap((g) => g.get(no) ?? []))]);
  const ir = Math.max(...models.map((m) => m.find((f) => f.no === MODEL.irVersion)?.value ?? 0));
  // Everything else of the model (producer, opsets, ...) from the cloud model; its metadata is dropped.
  const rest = a.filter((f) => f.no !== MODEL.irVersion && f.no !== MODEL.graph && f.no !== MODEL.metadataProps).map((f) => f.raw);
  return concat([varintField(MODEL.irVersion, ir), ...rest, lenField(MODEL.graph, graph)]);
}
