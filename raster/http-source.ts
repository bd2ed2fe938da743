/**
 * The byte source geotiff.js reads a remote TIFF through (see http-range.ts for requests,
 * retries and error classes): ranges asked for in one turn of the event loop are merged when
 * near each other and fetched at most `concurrency` requests at a time per origin; small reads
 * are served from cached 64 KiB blocks. geotiff.js gets each range as an ArrayBuffer of its own
 * (`fetch`); the tile reads (tiff-window.ts) take views into the merged request's body
 * (`fetchBytes`), a copy less per tile.
 */
import type { GeoTIFF } from 'geotiff';
import { ownBuffer } from './bytes.ts';
import { fetchRange, type HttpReadOptions } from './http-range.ts';

type BaseSource = Parameters<typeof GeoTIFF.fromSource>[0];
interface Slice {
  offset: number;
  length: number;
}

/** One range asked for, waiting for the request that covers it. */
interface Pending extends Slice {
  /** A view into the body of the request that covers it. */
  resolve(data: Uint8Array): void;
  reject(err: unknown): void;
}

/** A request covering several asked-for ranges. */
export interface MergedRange {
  start: number;
  /** Exclusive. */
  end: number;
  parts: number[];
}

/**
 * Groups ranges (any order) into requests: sorted by offset, a range joins the current request
 * when it starts at most `gap` bytes after its end and the request stays within `maxBytes`.
 * `parts` are indexes into `slices`.
 */
export function mergeRanges(slices: readonly Slice[], gap: number, maxBytes: number): MergedRange[] {
  const order = slices.map((_, i) => i).sort((a, b) => slices[a]!.offset - slices[b]!.offset);
  const out: MergedRange[] = [];
  for (const i of order) {
    const s = slices[i]!;
    const last = out.at(-1);
    const end = s.offset + s.length;
    if (last && s.offset <= last.end + gap && Math.max(last.end, end) - last.start <= maxBytes) {
      last.end = Math.max(last.end, end);
      last.parts.push(i);
    } else {
      out.push({ start: s.offset, end, parts: [i] });
    }
  }
  return out;
}

/** At most `limit` tasks at a time, first come first served. */
class Limiter {
  private active = 0;
  private readonly queue: (() => void)[] = [];
  constructor(private readonly limit: number) {}

  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.active >= this.limit) await new Promise<void>((r) => this.queue.push(r));
    this.active++;
    try {
      return await task();
    } finally {
      this.active--;
      this.queue.shift()?.();
    }
  }
}

/** Per origin and thread: every file of one server shares its request slots. */
const limiters = new Map<string, Limiter>();
function limiterFor(url: string, limit: number): Limiter {
  const key = `${new URL(url).origin}|${limit}`;
  let l = limiters.get(key);
  if (!l) limiters.set(key, (l = new Limiter(limit)));
  return l;
}

const BLOCK = 64 * 1024;
/** The first block of a file, which opening it reads (tiff-file.ts's probe) and hands to the source. */
export const HEADER_BLOCK = BLOCK;
/** Reads up to this size go through the block cache (header, IFD, tag arrays). */
const SMALL_READ = 16 * 1024;
const MAX_BLOCKS = 32;

export class HttpRangeSource implements BaseSource {
  private pending: Pending[] = [];
  private flushScheduled = false;
  /** Cached 64 KiB blocks by index, oldest first (Map order). */
  private readonly blocks = new Map<number, Promise<Uint8Array>>();

  constructor(
    private readonly url: string,
    private readonly label: string,
    private readonly size: number | null,
    /** Sent with every request (--http-header). */
    private readonly headers: Readonly<Record<string, string>>,
    private readonly options: Required<HttpReadOptions>,
    /** The file's first bytes when already read (up to one block; fewer when the file is smaller). */
    head?: Uint8Array,
  ) {
    if (head && (head.byteLength === BLOCK || (size !== null && head.byteLength === size))) {
      this.blocks.set(0, Promise.resolve(head.slice()));
    }
  }

  get fileSize(): number | null {
    return this.size;
  }

  async fetch(slices: Slice[]): Promise<ArrayBufferLike[]> {
    return Promise.all(slices.map(async (s) => (s.length <= SMALL_READ ? (await this.small(s)).buffer : ownBuffer(await this.queued(s)))));
  }

  /**
   * One range as a view into the body of the request that fetched it (with the ranges near it):
   * no copy, and the body lives as long as any of its views.
   */
  async fetchBytes(slice: Slice): Promise<Uint8Array> {
    return slice.length <= SMALL_READ ? this.small(slice) : this.queued(slice);
  }

  async fetchSlice(slice: Slice): Promise<Slice & { data: ArrayBufferLike }> {
    const [data] = await this.fetch([slice]);
    return { ...slice, data: data! };
  }

  async close(): Promise<void> {
    this.blocks.clear();
  }

  /** A small read out of one or two cached blocks. */
  private async small(s: Slice): Promise<Uint8Array<ArrayBuffer>> {
    const first = Math.floor(s.offset / BLOCK);
    const last = Math.floor((s.offset + s.length - 1) / BLOCK);
    const out = new Uint8Array(s.length);
    for (let b = first; b <= last; b++) {
      const block = await this.block(b);
      const from = Math.max(s.offset, b * BLOCK);
      const to = Math.min(s.offset + s.length, b * BLOCK + block.byteLength);
      if (to > from) out.set(block.subarray(from - b * BLOCK, to - b * BLOCK), from - s.offset);
    }
    return out;
  }

  private block(index: number): Promise<Uint8Array> {
    const cached = this.blocks.get(index);
    if (cached) {
      this.blocks.delete(index);
      this.blocks.set(index, cached);
      return cached;
    }
    if (this.size !== null && index * BLOCK >= this.size) return Promise.resolve(new Uint8Array(0));
    const end = this.size === null ? (index + 1) * BLOCK : Math.min((index + 1) * BLOCK, this.size);
    // A block of its own: a view would keep the whole merged request it came with alive in the cache.
    const p = this.queued({ offset: index * BLOCK, length: end - index * BLOCK }).then((v) => new Uint8Array(ownBuffer(v)));
    p.catch(() => this.blocks.delete(index));
    this.blocks.set(index, p);
    if (this.blocks.size > MAX_BLOCKS) this.blocks.delete(this.blocks.keys().next().value!);
    return p;
  }

  /** Joins the ranges of this turn of the event loop; they are merged and fetched together. */
  private queued(s: Slice): Promise<Uint8Array> {
    return new Promise<Uint8Array>((resolve, reject) => {
      this.pending.push({ ...s, resolve, reject });
      if (this.flushScheduled) return;
      this.flushScheduled = true;
      setImmediate(() => this.flush());
    });
  }

  private flush(): void {
    const batch = this.pending;
    this.pending = [];
    this.flushScheduled = false;
    const limiter = limiterFor(this.url, this.options.concurrency);
    for (const m of mergeRanges(batch, this.options.mergeGapBytes, this.options.maxRequestBytes)) {
      const parts = m.parts.map((i) => batch[i]!);
      limiter
        .run(() => fetchRange({ url: this.url, label: this.label, headers: this.headers, range: { start: m.start, end: m.end - 1 } }, this.options))
        .then((body) => {
          for (const p of parts) {
            const from = p.offset - m.start;
            p.resolve(body.subarray(from, from + p.length));
          }
        })
        .catch((err: unknown) => parts.forEach((p) => p.reject(err)));
    }
  }
}
