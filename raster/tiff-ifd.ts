/**
 * Serializing one classic little-endian TIFF image file directory (IFD): entries sorted by tag,
 * values longer than 4 bytes in an area right after the entries.
 */

export const TIFF_ASCII = 2;
export const TIFF_SHORT = 3;
export const TIFF_LONG = 4;
export const TIFF_DOUBLE = 12;

export interface IfdEntry {
  tag: number;
  type: typeof TIFF_ASCII | typeof TIFF_SHORT | typeof TIFF_LONG | typeof TIFF_DOUBLE;
  /** Numbers, or a string for ASCII (a trailing NUL is added). */
  values: ArrayLike<number> | string;
}

const SIZE: Record<number, number> = { [TIFF_ASCII]: 1, [TIFF_SHORT]: 2, [TIFF_LONG]: 4, [TIFF_DOUBLE]: 8 };

function payload(e: IfdEntry): Buffer {
  if (e.type === TIFF_ASCII) return Buffer.from(`${String(e.values)}\0`, 'latin1');
  const vals = e.values as ArrayLike<number>;
  const buf = Buffer.alloc(vals.length * SIZE[e.type]!);
  for (let i = 0; i < vals.length; i++) {
    const v = vals[i]!;
    if (e.type === TIFF_SHORT) buf.writeUInt16LE(v, i * 2);
    else if (e.type === TIFF_LONG) buf.writeUInt32LE(v, i * 4);
    else buf.writeDoubleLE(v, i * 8);
  }
  return buf;
}

/** Byte length of the IFD for these entries (independent of the numbers in them). */
export function ifdLength(entries: IfdEntry[]): number {
  let n = 2 + entries.length * 12 + 4;
  for (const e of entries) {
    const len = e.type === TIFF_ASCII ? String(e.values).length + 1 : (e.values as ArrayLike<number>).length * SIZE[e.type]!;
    if (len > 4) n += len + (len & 1);
  }
  return n;
}

/** The IFD as it lies at file offset `at` (offsets inside it are absolute), pointing at the IFD at `next` (0: none). */
export function encodeIfd(entries: IfdEntry[], at: number, next = 0): Buffer {
  const sorted = [...entries].sort((a, b) => a.tag - b.tag);
  const head = Buffer.alloc(2 + sorted.length * 12 + 4);
  head.writeUInt16LE(sorted.length, 0);
  const extra: Buffer[] = [];
  let extraAt = at + head.length;
  sorted.forEach((e, i) => {
    const data = payload(e);
    const o = 2 + i * 12;
    head.writeUInt16LE(e.tag, o);
    head.writeUInt16LE(e.type, o + 2);
    head.writeUInt32LE(data.length / SIZE[e.type]!, o + 4);
    if (data.length <= 4) {
      data.copy(head, o + 8);
    } else {
      head.writeUInt32LE(extraAt, o + 8);
      const padded = data.length & 1 ? Buffer.concat([data, Buffer.alloc(1)]) : data;
      extra.push(padded);
      extraAt += padded.length;
    }
  });
  head.writeUInt32LE(next, head.length - 4);
  return Buffer.concat([head, ...extra]);
}
