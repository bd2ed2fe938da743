/**
 * Two ONNX models as one: the cloud and the shadow model side by side in one graph, every name
 * prefixed ("cloud/", "shadow/"), so a chip thread holds one onnxruntime session instead of two.
 * onnxruntime keeps a memory arena per session, sized by the largest intermediate tensors of its
 * model (about 143 MB for a default-model session at 512x512): within one session the shadow
 * branch reuses what the cloud branch freed, and a chip takes one run instead of two.
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

/** One graph's fields, renamed, grouped by field number (graph name and doc dropped). */
function renameGraph(graph: Uint8Array, prefix: (s: string) => string): Map<number, Uint8Array[]> {
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

/**
 * The two models in one ModelProto. Graph inputs, outputs, initializers and nodes keep their
 * order (cloud's first), renamed with pairName. Throws PairMergeError when the models cannot be
 * merged as they are.
 */
export function mergeModelPair(cloud: Uint8Array, shadow: Uint8Array): Uint8Array {
  const models = [cloud, shadow].map((bytes) => parse(bytes));
  for (const fields of models) {
    if (fields.some((f) => f.no === MODEL.trainingInfo || f.no === MODEL.functions)) throw new PairMergeError('a model defines local functions or training info');
    if (fields.filter((f) => f.no === MODEL.graph).length !== 1) throw new PairMergeError('a model has no graph');
  }
  const [a, b] = models as [Field[], Field[]];
  if (opsets(a).join() !== opsets(b).join()) throw new PairMergeError(`the models import different operator sets (${opsets(a).join(', ')} vs ${opsets(b).join(', ')})`);
  const graphs = (['cloud', 'shadow'] as const).map((role, i) => renameGraph(models[i]!.find((f) => f.no === MODEL.graph)!.payload, (n) => pairName(role, n)));
  const order = [GRAPH.node, GRAPH.initializer, GRAPH.input, GRAPH.output, GRAPH.valueInfo];
  const graph = concat([lenField(GRAPH.name, enc.encode('cloud+shadow')), ...order.flatMap((no) => graphs.flatMap((g) => g.get(no) ?? []))]);
  const ir = Math.max(...models.map((m) => m.find((f) => f.no === MODEL.irVersion)?.value ?? 0));
  // Everything else of the model (producer, opsets, ...) from the cloud model; its metadata is dropped.
  const rest = a.filter((f) => f.no !== MODEL.irVersion && f.no !== MODEL.graph && f.no !== MODEL.metadataProps).map((f) => f.raw);
  return concat([varintField(MODEL.irVersion, ir), ...rest, lenField(MODEL.graph, graph)]);
}
