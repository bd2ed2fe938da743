/**
 * How tile outcomes travel over JetStream: the messages of shared/messages.ts, deflated when they
 * are large (a result's three bit-packed masks, about 52 KB a chip, shrink several times over:
 * masks are runs), marked by a header; and the results of one job's chips in one message, a
 * bundle (`Icm-Bundle: <count>`: each result's bytes after their length, 4 bytes little-endian),
 * so a job of 4 chips costs the server, the worker and the coordinator one message, not four.
 * The same outcomes come out as went in, so both transports keep one contract; only the wire
 * and the results stream (retained until the output is written) carry less. A message without
 * the headers is one outcome as it is, so a coordinator reads older workers' results too.
 */
import { deflateRawSync, inflateRawSync } from 'node:zlib';
import { headers, type MsgHdrs } from '@nats-io/transport-node';
import { CloudMaskError } from '../shared/errors.ts';
import { decodeOutcome, encodeMessage, MAX_MESSAGE_BYTES, type TileOutcome } from '../shared/messages.ts';

/** The header that says the body is raw DEFLATE. */
export const ENCODING_HEADER = 'Icm-Encoding';
/** The header that says the body is several outcomes, and how many. */
export const BUNDLE_HEADER = 'Icm-Bundle';
const DEFLATE = 'deflate';
/** Smaller results go as they are. */
const DEFLATE_ABOVE_BYTES = 2048;
/**
 * The most bytes of results (before deflate) one bundle carries: well under nats-server's default
 * 1 MB max_payload even if nothing compresses. A result larger than this (with probabilities)
 * goes alone.
 */
export const BUNDLE_MAX_BYTES = 512 * 1024;
/** The most outcomes in one bundle (a job has at most MAX_CHIPS_PER_JOB chips). */
const BUNDLE_MAX_COUNT = 64;

export interface WireMessage {
  data: Uint8Array;
  headers?: MsgHdrs;
}

/**
 * An outcome as it is published. Failures go as they are: people read the dead-letter stream
 * with `nats stream view`. Level 1: the masks are runs, and the worker's cores are for inference.
 */
export function outcomeToWire(outcome: TileOutcome): WireMessage {
  const bytes = encodeMessage(outcome);
  if (outcome.type !== 'tile-result') return { data: bytes };
  return deflated(bytes, null);
}

/**
 * Results already encoded (encodeMessage), as one message: a bundle of them, or the one result as
 * outcomeToWire sends it. Together at most BUNDLE_MAX_BYTES; the caller keeps to that.
 */
export function resultsToWire(encoded: readonly Uint8Array[]): WireMessage {
  if (encoded.length === 1) return deflated(encoded[0]!, null);
  const total = encoded.reduce((a, e) => a + 4 + e.length, 0);
  if (encoded.length === 0 || encoded.length > BUNDLE_MAX_COUNT || total > BUNDLE_MAX_BYTES + 4 * BUNDLE_MAX_COUNT) {
    throw new RangeError(`a bundle holds 1 to ${BUNDLE_MAX_COUNT} results of at most ${BUNDLE_MAX_BYTES} bytes together, got ${encoded.length} of ${total}`);
  }
  const body = new Uint8Array(total);
  const view = new DataView(body.buffer);
  let at = 0;
  for (const e of encoded) {
    view.setUint32(at, e.length, true);
    body.set(e, at + 4);
    at += 4 + e.length;
  }
  return deflated(body, encoded.length);
}

function deflated(bytes: Uint8Array, bundle: number | null): WireMessage {
  if (bytes.length <= DEFLATE_ABOVE_BYTES && bundle === null) return { data: bytes };
  const h = headers();
  if (bundle !== null) h.set(BUNDLE_HEADER, String(bundle));
  if (bytes.length <= DEFLATE_ABOVE_BYTES) return { data: bytes, headers: h };
  h.set(ENCODING_HEADER, DEFLATE);
  return { data: deflateRawSync(bytes, { level: 1 }), headers: h };
}

const badWire = (what: string): CloudMaskError => new CloudMaskError('BAD_MESSAGE', `message: ${what}`);

/** The outcomes a published message carries (one, or a bundle's); anything malformed throws CloudMaskError('BAD_MESSAGE'). */
export function outcomesFromWire(data: Uint8Array, h: MsgHdrs | undefined): TileOutcome[] {
  const encoding = h?.get(ENCODING_HEADER) ?? '';
  let bytes = data;
  if (encoding !== '') {
    if (encoding !== DEFLATE) throw badWire(`unknown ${ENCODING_HEADER} "${encoding}"`);
    try {
      // Bounded: a small message must not inflate past what the server would have let through.
      bytes = inflateRawSync(data, { maxOutputLength: MAX_MESSAGE_BYTES });
    } catch (err) {
      throw badWire(`not deflate, or over ${MAX_MESSAGE_BYTES} bytes inflated (${(err as Error).message})`);
    }
  }
  const bundle = h?.get(BUNDLE_HEADER) ?? '';
  if (bundle === '') return [decodeOutcome(bytes)];
  const count = Number(bundle);
  if (!Number.isInteger(count) || count < 1 || count > BUNDLE_MAX_COUNT) throw badWire(`${BUNDLE_HEADER} "${bundle}" is not a count from 1 to ${BUNDLE_MAX_COUNT}`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out: TileOutcome[] = [];
  let at = 0;
  while (at < bytes.length) {
    const length = at + 4 <= bytes.length ? view.getUint32(at, true) : -1;
    if (length < 0 || at + 4 + length > bytes.length) throw badWire(`bundle cut short at byte ${at} of ${bytes.length}`);
    out.push(decodeOutcome(bytes.subarray(at + 4, at + 4 + length)));
    at += 4 + length;
  }
  if (out.length !== count) throw badWire(`bundle of ${out.length} outcomes, its ${BUNDLE_HEADER} says ${count}`);
  return out;
}
