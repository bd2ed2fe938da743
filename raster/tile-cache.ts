/**
 * A cache of decoded TIFF tiles shared by all threads of a process (SharedArrayBuffer + Atomics).
 *
 * Neighbouring chips overlap and several chips fall in one source tile (a 1024 tile of a 20 m band
 * covers 2048 pixels of the 10 m grid), so without it every tile is inflated many times, and by
 * every chip thread. With it each tile is decoded once per process while it stays in the cache:
 * a thread that needs a tile another thread is decoding waits for it (Atomics.waitAsync) and
 * meanwhile decodes the other tiles of its window. A tile whose compressed bytes are cheap to read
 * (a local file) is claimed only when they are in and its decode starts (a `TileLoad` with
 * `fetch`): claimed before its read, a window's tiles were all claimed at once by the thread
 * that got there first, and the other thread, needing the same tiles, waited while that one
 * decoded them one after the other (measured at the start of a full tile: one chip thread busy,
 * the other idle, for about 2 s). Then two threads may read the same bytes; a remote tile, whose
 * read is a request, is claimed before it, and its bytes, once in, are handed over when another
 * thread waits for the tile: copied into the slot (FETCHED), to be decoded by whichever thread
 * takes them first, a waiting one or, after a moment, the one that read them (at the start of a remote full tile one thread's first
 * requests covered every tile the other's jobs needed, and the other idled about 1.5 s while
 * this one inflated them all).
 *
 * Memory is a fixed number of equal slots, reserved up front but committed by the OS only as
 * slots are first written. Among slots no reader holds, eviction takes a stale slot first (one
 * not used during the last `slots` uses: a finished scene's), then the lowest priority, then the
 * least recently used. Readers give a tile's bottom edge (as a fraction of the image
 * height) as its priority: chips come row by row, so tiles above the current chip row are the
 * ones no chip will need again, and a cache smaller than a whole chip row's tiles still decodes
 * each tile about once instead of thrashing as plain LRU does on a cyclic sweep. Tiles
 * larger than a slot, or met when every slot is busy, are decoded without the cache. Keys name the
 * file's content (path plus size and modification time, or URL plus length and ETag), so a file
 * replaced in place is never served from stale slots.
 */

const EMPTY = 0;
const LOADING = 1;
const READY = 2;
/** The compressed bytes are in the slot; the first thread to take them decodes them there. */
const FETCHED = 3;
/** How long the thread that read a tile's bytes leaves them to the others before decoding them itself, ms. */
const HAND_OVER_MS = 1;

/** Int32 fields per slot in the metadata array. */
const FIELDS = 8;
const F_STATE = 0;
const F_HASH_LO = 1;
const F_HASH_HI = 2;
const F_LENGTH = 3;
const F_REFS = 4;
const F_LAST_USE = 5;
const F_PRIORITY = 6;
/** Threads waiting for the slot's tile: the thread that read its bytes hands them over only when some are. */
const F_WAITERS = 7;
/** Header: [0] lock word, [1] use clock. */
const HEADER = 4;

/** Atomics.waitAsync (Node 16+; not in the ES2022 type library this project compiles against). */
const waitAsync = (Atomics as unknown as {
  waitAsync(a: Int32Array, index: number, value: number): { async: false; value: string } | { async: true; value: Promise<string> };
}).waitAsync.bind(Atomics);

/** What crosses to other threads (structured clone shares the memory). */
export interface TileCacheHandle {
  meta: SharedArrayBuffer;
  data: SharedArrayBuffer;
  slotBytes: number;
  slots: number;
}

export interface TileCacheOptions {
  /** Total bytes of tile data. Default 320 MiB. */
  bytes?: number;
  /** Bytes per slot: the largest decoded tile that is cached. Default 2 MiB (a 1024x1024 uint16 tile). */
  slotBytes?: number;
}

/**
 * 320 MiB (160 slots): on a full Sentinel-2 tile a chip row that crosses into a new row of 10 m
 * tiles needs about 132 tiles at once (two rows of 10 m tiles, one of 20 m and 60 m); at 256 MiB
 * (128 slots) the embedded run decoded 905-926 tiles for the 708 there are, at 320 MiB 727
 * (measured 2026-12-02; 288 MiB: 799).
 */
export const TILE_CACHE_DEFAULTS = { bytes: 320 * 2 ** 20, slotBytes: 2 * 2 ** 20 } as const;

/** Allocates the shared memory of a cache; pass the handle to every thread that reads. */
export function createTileCacheHandle(options: TileCacheOptions = {}): TileCacheHandle {
  const bytes = options.bytes ?? TILE_CACHE_DEFAULTS.bytes;
  const slotBytes = options.slotBytes ?? TILE_CACHE_DEFAULTS.slotBytes;
  if (!Number.isInteger(slotBytes) || slotBytes < 1024 || slotBytes % 8 !== 0) throw new RangeError(`options.slotBytes must be a multiple of 8 of at least 1024, got ${slotBytes}`);
  if (!Number.isInteger(bytes) || bytes < slotBytes) throw new RangeError(`options.bytes must be an integer of at least slotBytes (${slotBytes}), got ${bytes}`);
  const slots = Math.floor(bytes / slotBytes);
  return { meta: new SharedArrayBuffer(4 * (HEADER + slots * FIELDS)), data: new SharedArrayBuffer(slots * slotBytes), slotBytes, slots };
}

/** A decoded tile held for reading; release it when done (until then it cannot be evicted). */
export interface TileLease {
  /** The decoded bytes (a view into shared memory, or a private buffer when not cached). */
  bytes: Uint8Array;
  release(): void;
}

export interface TileCacheStats {
  hits: number;
  misses: number;
  waits: number;
  uncached: number;
  /** Compressed bytes read for nothing: another thread had decoded the tile meanwhile. */
  readTwice: number;
  /** Tiles whose bytes this thread read and handed over, another thread waiting for them. */
  handedOver: number;
  /** Tiles decoded here from bytes another thread read (handed over). */
  takenOver: number;
}

/**
 * How a missing tile is brought in: one step (`load`, claimed before it starts), or its compressed
 * bytes read (`fetch`) and then decoded under the claim (`decode`, or `decodeInto` the slot). The
 * read is unclaimed unless `claimBeforeRead` (a remote file, where a read is a request not to
 * make twice); such bytes are handed over to whichever thread decodes them first when
 * `decodeInto` is given (see the top).
 */
export type TileLoad =
  | (() => Promise<ArrayBufferLike>)
  | {
      /** The compressed bytes (a view: it may share a buffer with other tiles' bytes). */
      fetch(): Promise<Uint8Array>;
      decode(raw: Uint8Array): Promise<ArrayBufferLike>;
      /** Decodes straight into the slot: the bytes written, or null to decode() instead. */
      decodeInto?(raw: Uint8Array, slot: Uint8Array): number | null;
      claimBeforeRead?: boolean;
    };

/** 64-bit FNV-1a of the key, as two 32-bit halves (0 is reserved for empty slots). */
function hashKey(key: string): [number, number] {
  let lo = 0x811c9dc5;
  let hi = 0xcbf29ce4;
  for (let i = 0; i < key.length; i++) {
    const c = key.charCodeAt(i);
    lo = Math.imul(lo ^ c, 0x01000193);
    hi = Math.imul(hi ^ c ^ (lo >>> 24), 0x01000193);
  }
  return [lo | 1, hi];
}

export class TileCache {
  private readonly meta: Int32Array;
  private readonly data: SharedArrayBuffer;
  private readonly slotBytes: number;
  private readonly slots: number;
  readonly stats: TileCacheStats = { hits: 0, misses: 0, waits: 0, uncached: 0, readTwice: 0, handedOver: 0, takenOver: 0 };

  constructor(handle: TileCacheHandle) {
    this.meta = new Int32Array(handle.meta);
    this.data = handle.data;
    this.slotBytes = handle.slotBytes;
    this.slots = handle.slots;
  }

  /**
   * The decoded tile for `key`: from the cache, or brought in by `load` here (and stored) when no
   * thread has it, or awaited when another thread is decoding it. `priority` in [0, 1]: lower is
   * evicted first.
   */
  async get(key: string, load: TileLoad, priority = 1): Promise<TileLease> {
    const [lo, hi] = hashKey(key);
    const split = typeof load === 'function' ? null : load;
    let raw: Uint8Array | null = null;
    /** Its bytes went into the slot for any thread to decode (once per call). */
    let handedOver = false;
    const bytes = async (): Promise<Uint8Array> => (raw ??= await split!.fetch());
    const decode = async (): Promise<ArrayBufferLike> => (split ? split.decode(await bytes()) : (load as () => Promise<ArrayBufferLike>)());
    for (;;) {
      this.lock();
      const found = this.find(lo, hi);
      if (found >= 0) {
        const s = this.field(found, 0);
        const state = Atomics.load(this.meta, s + F_STATE);
        if (state === READY) {
          this.meta[s + F_REFS]!++;
          this.meta[s + F_LAST_USE] = this.tick();
          this.unlock();
          this.stats.hits++;
          if (raw && !handedOver) this.stats.readTwice++;
          return this.lease(found);
        }
        if (state === FETCHED && split?.decodeInto) {
          this.meta[s + F_STATE] = LOADING;
          this.meta[s + F_REFS] = 1;
          this.unlock();
          if (!raw) this.stats.takenOver++;
          return this.decodeHandedOver(found, split, raw);
        }
        // Another thread is decoding it (or, where this one cannot decode into a slot, has its bytes there): wait, then look again.
        this.unlock();
        this.stats.waits++;
        Atomics.add(this.meta, s + F_WAITERS, 1);
        const w = waitAsync(this.meta, s + F_STATE, state);
        if (w.async) await w.value;
        Atomics.sub(this.meta, s + F_WAITERS, 1);
        continue;
      }
      if (split && !raw && !split.claimBeforeRead) {
        // Not claimed while its bytes are read: the claim is for the decode (see the top).
        this.unlock();
        raw = await split.fetch();
        continue;
      }
      const victim = this.victim();
      if (victim < 0) {
        this.unlock();
        this.stats.uncached++;
        return uncached(await decode());
      }
      const s = this.field(victim, 0);
      this.meta[s + F_STATE] = LOADING;
      this.meta[s + F_HASH_LO] = lo;
      this.meta[s + F_HASH_HI] = hi;
      this.meta[s + F_REFS] = 1;
      this.meta[s + F_PRIORITY] = Math.round(Math.min(1, Math.max(0, priority)) * 2 ** 30);
      this.unlock();
      this.stats.misses++;
      if (split?.claimBeforeRead && split.decodeInto && !handedOver) {
        try {
          await bytes();
        } catch (err) {
          this.clear(victim);
          throw err;
        }
        if (raw!.byteLength > 0 && raw!.byteLength <= this.slotBytes && Atomics.load(this.meta, s + F_WAITERS) > 0) {
          this.handOver(victim, raw!);
          handedOver = true;
          this.stats.handedOver++;
          await new Promise((r) => setTimeout(r, HAND_OVER_MS));
          continue;
        }
      }
      const into = split?.decodeInto ? async (slot: Uint8Array) => split.decodeInto!(await bytes(), slot) : null;
      return this.fill(victim, decode, into);
    }
  }

  /** Puts a claimed tile's compressed bytes into its slot for any thread to decode, and lets go of the claim. */
  private handOver(slot: number, raw: Uint8Array): void {
    const s = this.field(slot, 0);
    new Uint8Array(this.data, slot * this.slotBytes, raw.byteLength).set(raw);
    this.lock();
    this.meta[s + F_LENGTH] = raw.byteLength;
    this.meta[s + F_REFS] = 0;
    Atomics.store(this.meta, s + F_STATE, FETCHED);
    this.unlock();
    Atomics.notify(this.meta, s + F_STATE);
  }

  /**
   * Decodes the compressed bytes in a FETCHED slot (taken: LOADING, held by the caller) into it:
   * from `own` when this thread read them, else from a copy (the decode overwrites the slot).
   */
  private decodeHandedOver(slot: number, split: Exclude<TileLoad, () => Promise<ArrayBufferLike>>, own: Uint8Array | null): Promise<TileLease> {
    const s = this.field(slot, 0);
    const length = this.meta[s + F_LENGTH]!;
    const input = own ?? scratchCopy(new Uint8Array(this.data, slot * this.slotBytes, length));
    const target = new Uint8Array(this.data, slot * this.slotBytes, this.slotBytes);
    let direct: number | null;
    try {
      direct = split.decodeInto!(input, target);
    } catch (err) {
      this.clear(slot);
      return Promise.reject(err);
    }
    if (direct !== null) return Promise.resolve(this.ready(slot, direct));
    // Decoded the usual way after all, from bytes of its own (the scratch copy is this thread's only until the next await).
    const kept = new Uint8Array(input);
    return this.fill(slot, () => split.decode(kept), null);
  }

  private async fill(slot: number, load: () => Promise<ArrayBufferLike>, into: ((slot: Uint8Array) => Promise<number | null>) | null): Promise<TileLease> {
    const target = new Uint8Array(this.data, slot * this.slotBytes, this.slotBytes);
    let length: number;
    try {
      const direct = into ? await into(target) : null;
      if (direct !== null) length = direct;
      else {
        const decoded = await load();
        if (decoded.byteLength > this.slotBytes) {
          this.clear(slot);
          this.stats.uncached++;
          return uncached(decoded);
        }
        target.set(new Uint8Array(decoded));
        length = decoded.byteLength;
      }
    } catch (err) {
      this.clear(slot);
      throw err;
    }
    return this.ready(slot, length);
  }

  /** Marks a slot decoded (`length` bytes) and wakes its waiters; the caller's lease. */
  private ready(slot: number, length: number): TileLease {
    const s = this.field(slot, 0);
    this.lock();
    this.meta[s + F_LENGTH] = length;
    this.meta[s + F_LAST_USE] = this.tick();
    Atomics.store(this.meta, s + F_STATE, READY);
    this.unlock();
    Atomics.notify(this.meta, s + F_STATE);
    return this.lease(slot);
  }

  /** Frees a slot whose decode failed or did not fit; waiters wake and try again themselves. */
  private clear(slot: number): void {
    const s = this.field(slot, 0);
    this.lock();
    this.meta[s + F_HASH_LO] = 0;
    this.meta[s + F_HASH_HI] = 0;
    this.meta[s + F_REFS] = 0;
    Atomics.store(this.meta, s + F_STATE, EMPTY);
    this.unlock();
    Atomics.notify(this.meta, s + F_STATE);
  }

  private lease(slot: number): TileLease {
    const s = this.field(slot, 0);
    const bytes = new Uint8Array(this.data, slot * this.slotBytes, this.meta[s + F_LENGTH]);
    let released = false;
    return {
      bytes,
      release: () => {
        if (released) return;
        released = true;
        Atomics.sub(this.meta, s + F_REFS, 1);
      },
    };
  }

  /** Index of the slot holding the hash, or -1. Caller holds the lock. */
  private find(lo: number, hi: number): number {
    const m = this.meta;
    for (let i = 0, s = HEADER; i < this.slots; i++, s += FIELDS) {
      if (m[s + F_HASH_LO] === lo && m[s + F_HASH_HI] === hi && m[s + F_STATE] !== EMPTY) return i;
    }
    return -1;
  }

  /**
   * An empty slot, else among the slots nobody holds: the least recently used stale one (not
   * used during the last `slots` uses), else the lowest-priority, least recently used one; -1
   * when every slot is held. Caller holds the lock. Priority is a tile's place in its own image:
   * without the stale rule, a scene's last tiles (priority near 1) outlived the scene, and the
   * next scene, starting from its top (priority near 0), evicted its own tiles instead of them
   * (measured: from the second scene of a batch on, 2.5 times the decodes of the first).
   */
  private victim(): number {
    const m = this.meta;
    const now = m[1]!;
    let best = -1;
    let bestPriority = Infinity;
    let bestUse = Infinity;
    let stale = -1;
    let staleAge = this.slots;
    for (let i = 0, s = HEADER; i < this.slots; i++, s += FIELDS) {
      const state = m[s + F_STATE];
      if (state === EMPTY) return i;
      if (state !== READY || Atomics.load(m, s + F_REFS) !== 0) continue;
      const p = m[s + F_PRIORITY]!;
      const use = m[s + F_LAST_USE]!;
      const age = (now - use) | 0; // the clock wraps: differences stay right
      if (age > staleAge) {
        stale = i;
        staleAge = age;
      }
      if (p < bestPriority || (p === bestPriority && use < bestUse)) {
        best = i;
        bestPriority = p;
        bestUse = use;
      }
    }
    return stale >= 0 ? stale : best;
  }

  private field(slot: number, f: number): number {
    return HEADER + slot * FIELDS + f;
  }

  private tick(): number {
    return (this.meta[1] = (this.meta[1]! + 1) | 0);
  }

  /** A spin lock: critical sections are a scan of the slot table, microseconds. */
  private lock(): void {
    for (let spins = 0; Atomics.compareExchange(this.meta, 0, 0, 1) !== 0; spins++) {
      if (spins > 100) Atomics.wait(this.meta, 0, 1, 1);
    }
  }

  private unlock(): void {
    Atomics.store(this.meta, 0, 0);
    Atomics.notify(this.meta, 0, 1);
  }
}

/** This thread's copy of handed-over bytes, reused (a slot's size at most). */
let scratch = new Uint8Array(0);
function scratchCopy(bytes: Uint8Array): Uint8Array {
  if (scratch.length < bytes.length) scratch = new Uint8Array(Math.max(bytes.length, 2 * scratch.length));
  scratch.set(bytes);
  return scratch.subarray(0, bytes.length);
}

function uncached(buffer: ArrayBufferLike): TileLease {
  return { bytes: new Uint8Array(buffer), release: () => {} };
}
