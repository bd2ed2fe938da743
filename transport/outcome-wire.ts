/**
 * How a tile outcome travels over JetStream: the message of shared/messages.ts, deflated when it
 * is large (a result's three bit-packed masks, about 52 KB a chip, shrink several times over:
 * masks are runs), marked by a header. The same bytes come out as went in, so both transports
 * keep one contract; only the wire and the results stream (retained until the output is written)
 * carry less. A result without the header is read as it is, so a coordinator reads older
 * workers' results too.
 */
import { deflateRawSync, inflateRawSync } from 'node:zlib';
import { headers, type MsgHdrs } from '@nats-io/transport-node';
import { CloudMaskError } from '../shared/errors.ts';
import { decodeOutcome, encodeMessage, MAX_MESSAGE_BYTES, type TileOutcome } from '../shared/messages.ts';

/** The header that says the body is raw DEFLATE. */
export const ENCODING_HEADER = 'Icm-Encoding';
const DEFLATE = 'deflate';
/** Smaller results go as they are. */
const DEFLATE_ABOVE_BYTES = 2048;

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
  if (outcome.type !== 'tile-result' || bytes.length <= DEFLATE_ABOVE_BYTES) return { data: bytes };
  const h = headers();
  h.set(ENCODING_HEADER, DEFLATE);
  return { data: deflateRawSync(bytes, { level: 1 }), headers: h };
}

/** The outcome a published message carries; anything malformed throws CloudMaskError('BAD_MESSAGE'). */
export function outcomeFromWire(data: Uint8Array, h: MsgHdrs | undefined): TileOutcome {
  const encoding = h?.get(ENCODING_HEADER) ?? '';
  if (encoding === '') return decodeOutcome(data);
  if (encoding !== DEFLATE) throw new CloudMaskError('BAD_MESSAGE', `message: unknown ${ENCODING_HEADER} "${encoding}"`);
  let bytes: Uint8Array;
  try {
    // Bounded: a small message must not inflate past what the server would have let through.
    bytes = inflateRawSync(data, { maxOutputLength: MAX_MESSAGE_BYTES });
  } catch (err) {
    throw new CloudMaskError('BAD_MESSAGE', `message: not deflate, or over ${MAX_MESSAGE_BYTES} bytes inflated (${(err as Error).message})`);
  }
  return decodeOutcome(bytes);
}
