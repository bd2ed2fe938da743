/**
 * A zlib stream inflated straight into the caller's memory (a tile-cache slot), not into a fresh
 * buffer that is then copied: inflateSync allocates 2 MiB per 1024x1024 uint16 tile, about 1.4 GB
 * on a full Sentinel-2 tile, which the copy reads again and the garbage collector then frees.
 *
 * node:zlib has no public call for this. It drives the same native handle that zlib's own
 * inflateSync drives (`handle.writeSync` with the output buffer and offset), and checks it once
 * per thread against inflateSync on a known stream; where the handle is not there or disagrees
 * (another Node version), inflateInto answers null and the caller inflates as before.
 */
import { constants, createInflate, deflateSync, type Inflate } from 'node:zlib';

/** The two fields of a node:zlib stream that its synchronous calls use. */
interface Internals {
  _handle?: { writeSync?: (flush: number, input: Uint8Array, inOff: number, inLen: number, out: Uint8Array, outOff: number, outLen: number) => void } | null;
  _writeState?: Uint32Array;
}

type Engine = Inflate & Internals;

/** This thread's inflater; null: the handle is not usable here. */
let engine: Engine | null | undefined;

function usable(z: Engine): boolean {
  return typeof z._handle?.writeSync === 'function' && z._writeState instanceof Uint32Array && z._writeState.length >= 2;
}

function create(): Engine | null {
  const z = createInflate() as Engine;
  // Errors are read from z.errored at once; the stream's own 'error' event comes later.
  z.on('error', () => {});
  return usable(z) ? z : null;
}

/** Bytes written into `out`, or null when the stream does not fit (or no handle); throws what inflateSync throws on bad data. */
function run(z: Engine, input: Uint8Array, out: Uint8Array): number | null {
  z._handle!.writeSync!(constants.Z_FINISH, input, 0, input.byteLength, out, 0, out.byteLength);
  if (z.destroyed) {
    engine = undefined;
    throw z.errored ?? new Error('inflate failed');
  }
  const availOut = z._writeState![0]!;
  let written: number | null = out.byteLength - availOut;
  if (availOut === 0) {
    // `out` is full (a tile exactly a slot's size): the stream ended there if one more byte of
    // room stays unused. Otherwise the caller inflates the usual way and finds its real size.
    z._handle!.writeSync!(constants.Z_FINISH, input, input.byteLength, 0, probe, 0, 1);
    if (z.destroyed || z._writeState![0] !== 1) written = null;
  }
  if (z.destroyed) engine = undefined;
  else z.reset();
  return written;
}

const probe = new Uint8Array(1);

/** Checked once: a known stream must come out as it went in. */
function selfTest(z: Engine): boolean {
  const sample = new Uint8Array(4096).map((_, i) => (i * 31) % 251);
  const out = new Uint8Array(sample.length + 1);
  try {
    const n = run(z, deflateSync(sample), out);
    return n === sample.length && out.subarray(0, n).every((v, i) => v === sample[i]);
  } catch {
    return false;
  }
}

/**
 * Inflates the zlib stream `input` into `out`; the number of bytes written, or null when this
 * Node's zlib cannot do it or the stream may not fit `out` (the caller then uses inflateSync).
 * Bad data throws, as inflateSync does.
 */
export function inflateInto(input: Uint8Array, out: Uint8Array): number | null {
  if (engine === undefined) {
    const z = create();
    engine = z && selfTest(z) ? z : null;
  }
  if (engine === null) return null;
  return run(engine, input, out);
}
