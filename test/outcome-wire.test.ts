/** How results travel over JetStream: deflated with a header, read back to the same message. */
import { deflateRawSync } from 'node:zlib';
import { headers } from '@nats-io/transport-node';
import { describe, expect, test } from 'vitest';
import { packBits } from '../shared/bitpack.ts';
import { encodeMessage, MAX_MESSAGE_BYTES, type TileFailure, type TileResult } from '../shared/messages.ts';
import { BUNDLE_HEADER, BUNDLE_MAX_BYTES, ENCODING_HEADER, outcomesFromWire, outcomeToWire, resultsToWire } from '../transport/outcome-wire.ts';

const outcomeFromWire = (data: Uint8Array, h: Parameters<typeof outcomesFromWire>[1]) => {
  const all = outcomesFromWire(data, h);
  expect(all).toHaveLength(1);
  return all[0];
};

/** A 374x374 write window with a round cloud and its shadow beside it, as a chip's result. */
function result(chipIndex = 7): TileResult {
  const w = 374;
  const cloud = new Uint8Array(w * w);
  const shadow = new Uint8Array(w * w);
  for (let y = 0; y < w; y++) {
    for (let x = 0; x < w; x++) {
      cloud[y * w + x] = (x - 150) ** 2 + (y - 160) ** 2 < 90 ** 2 ? 1 : 0;
      shadow[y * w + x] = (x - 250) ** 2 + (y - 220) ** 2 < 70 ** 2 && !cloud[y * w + x] ? 1 : 0;
    }
  }
  return {
    type: 'tile-result', v: 1, runKey: 'scene-abc', chipIndex, worker: 'w0',
    write: { x: 384, y: 0, width: w, height: w },
    cloud: packBits(cloud), shadow: packBits(shadow), nodata: packBits(new Uint8Array(w * w)),
    skipped: false, inferredPixels: 376 * 376,
    timings: { readMs: 30, inferenceMs: 20, cloudMs: null, shadowMs: null, thresholdMs: 1, modelLoadMs: 0 },
  };
}

describe('results on the wire', () => {
  test('a result is deflated, marked, and reads back to the same message', () => {
    const r = result();
    const wire = outcomeToWire(r);
    expect(wire.headers?.get(ENCODING_HEADER)).toBe('deflate');
    expect(wire.data.length).toBeLessThan(encodeMessage(r).length / 10);
    expect(outcomeFromWire(wire.data, wire.headers)).toEqual(r);
  });

  test('an unmarked message (an older worker) and a failure go as they are', () => {
    const r = result();
    expect(outcomeFromWire(encodeMessage(r), undefined)).toEqual(r);
    const failure: TileFailure = { type: 'tile-failure', v: 1, runKey: 'scene-abc', chipIndex: 7, chips: [7, 8], worker: 'w0', deliveries: 4, error: { code: 'BAD_INPUT', message: 'x'.repeat(5000) } };
    const wire = outcomeToWire(failure);
    expect(wire.headers).toBeUndefined();
    expect(outcomeFromWire(wire.data, wire.headers)).toEqual(failure);
  });

  test('an unknown encoding, bytes that are not deflate and an inflation bomb are refused', () => {
    const odd = headers();
    odd.set(ENCODING_HEADER, 'zstd');
    expect(() => outcomeFromWire(encodeMessage(result()), odd)).toThrow(/unknown Icm-Encoding "zstd"/);
    const deflate = headers();
    deflate.set(ENCODING_HEADER, 'deflate');
    expect(() => outcomeFromWire(new TextEncoder().encode('not deflate at all'), deflate)).toThrow(/not deflate/);
    const bomb = deflateRawSync(new Uint8Array(MAX_MESSAGE_BYTES + 1024));
    expect(bomb.length).toBeLessThan(64 * 1024);
    expect(() => outcomeFromWire(bomb, deflate)).toThrow(/over 7340032 bytes inflated/);
  });

  test("a job's results go as one bundle: the same results in order, smaller than one message each", () => {
    const results = [3, 4, 5, 6].map(result);
    const encoded = results.map(encodeMessage);
    const wire = resultsToWire(encoded);
    expect(wire.headers?.get(BUNDLE_HEADER)).toBe('4');
    expect(wire.headers?.get(ENCODING_HEADER)).toBe('deflate');
    expect(outcomesFromWire(wire.data, wire.headers)).toEqual(results);
    const apart = results.reduce((a, r) => a + outcomeToWire(r).data.length, 0);
    expect(wire.data.length).toBeLessThan(apart);
    // One result is a message as outcomeToWire makes it: an older coordinator reads it.
    const one = resultsToWire([encoded[0]!]);
    expect(one.headers?.get(BUNDLE_HEADER) ?? '').toBe('');
    expect(Buffer.compare(Buffer.from(one.data), Buffer.from(outcomeToWire(results[0]!).data))).toBe(0);
    expect(() => resultsToWire([...encoded, new Uint8Array(BUNDLE_MAX_BYTES)])).toThrow(RangeError);
  });

  test('a bundle that is cut short, or whose count is wrong, is refused', () => {
    const encoded = [1, 2].map((i) => encodeMessage(result(i)));
    const h = (count: string) => {
      const x = headers();
      x.set(BUNDLE_HEADER, count);
      return x;
    };
    const body = Buffer.concat(encoded.map((e) => Buffer.concat([Buffer.from(new Uint32Array([e.length]).buffer), Buffer.from(e)])));
    expect(outcomesFromWire(body, h('2')).map((o) => o.chipIndex)).toEqual([1, 2]);
    expect(() => outcomesFromWire(body, h('3'))).toThrow(/bundle of 2 outcomes, its Icm-Bundle says 3/);
    expect(() => outcomesFromWire(body.subarray(0, body.length - 10), h('2'))).toThrow(/cut short/);
    expect(() => outcomesFromWire(body, h('many'))).toThrow(/not a count/);
  });
});
