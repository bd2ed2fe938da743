/**
 * One transport contract, every implementation: the same cases run against the in-process
 * transport (transport/embedded.ts) and the JetStream one on a real nats-server. What one does
 * and the other does not is a bug in the twin.
 */
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { Stitcher } from '../coordinator/stitch.ts';
import { packBits } from '../shared/bitpack.ts';
import type { CloudMaskError } from '../shared/errors.ts';
import { encodeMessage, type TileJob, type TileOutcome, type TileResult } from '../shared/messages.ts';
import { JOB_LANES, names } from '../shared/subjects.ts';
import type { CoordinatorTransport, JobDelivery, WorkerTransport } from '../shared/transport.ts';
import { EmbeddedTransport } from '../transport/embedded.ts';
import { ensureTopology, JetStreamCoordinatorTransport } from '../transport/jetstream.ts';
import { JetStreamWorkerTransport } from '../transport/jetstream-worker.ts';
import { startNatsServer, type NatsServer } from './helpers/nats-server.ts';

const ACK_WAIT_MS = 1500;
const MAX_DELIVERIES = 4;

interface Harness {
  coordinator: CoordinatorTransport;
  worker: WorkerTransport;
  /** Puts raw bytes on the job subject, as any client of the server could. */
  injectJobBytes(bytes: Uint8Array): Promise<void>;
  /** Messages stored for a run's outcomes, where the transport stores them. */
  storedOutcomeMessages?(runKey: string): Promise<number>;
  bad: CloudMaskError[];
  close(): Promise<void>;
}

let server: NatsServer;
let nc: NatsConnection;
let cases = 0;

const makers: Record<string, () => Promise<Harness>> = {
  embedded: async () => {
    const bad: CloudMaskError[] = [];
    const t = new EmbeddedTransport({ ackWaitMs: ACK_WAIT_MS, maxDeliveries: MAX_DELIVERIES, onBadMessage: (_s, e) => bad.push(e) });
    return { coordinator: t, worker: t, bad, injectJobBytes: async (b) => t.submitBytes('jobs.bad.0', b), close: async () => t.stop() };
  },
  jetstream: async () => {
    const bad: CloudMaskError[] = [];
    // A fresh prefix per case: its own streams and a consumer with this ack wait.
    const opts = { prefix: `contract${++cases}`, ackWaitMs: ACK_WAIT_MS, maxDeliveries: MAX_DELIVERIES, onBadMessage: (_s: string, e: CloudMaskError) => bad.push(e) };
    await ensureTopology(nc, opts);
    const worker = new JetStreamWorkerTransport(nc, opts);
    const js = jetstream(nc);
    return {
      coordinator: new JetStreamCoordinatorTransport(nc, opts),
      worker,
      bad,
      injectJobBytes: async (b) => void (await js.publish(names(opts.prefix).jobSubject('bad', 0), b)),
      storedOutcomeMessages: async (runKey) => {
        const n = names(opts.prefix);
        const info = await (await jetstreamManager(nc)).streams.info(n.resultsStream, { subjects_filter: n.resultSubject(runKey) });
        return info.state.subjects?.[n.resultSubject(runKey)] ?? 0;
      },
      close: async () => worker.stop(),
    };
  },
};

beforeAll(async () => {
  server = await startNatsServer();
  nc = await connect({ servers: server.url });
});
afterAll(async () => {
  await nc?.close();
  await server?.close();
});

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function job(chipIndex: number, runKey = 'run-a', pixels?: Uint16Array): TileJob {
  const read = { x: chipIndex * 4, y: 0, width: 4, height: 2 };
  return {
    type: 'tile-job', v: 1, runKey, chips: [{ chipIndex, read, write: read }],
    source: { kind: 'stacked', href: '/nowhere/scene.tif' },
    models: { cloud: 'c.onnx', shadow: 's.onnx' }, thresholds: { cloud: 0.3, shadow: 0.2 }, harmonize: false, withProbabilities: false,
    ...(pixels ? { pixels } : {}),
  };
}

function result(chipIndex: number, runKey = 'run-a'): TileResult {
  const bits = packBits(Array.from({ length: 8 }, (_, i) => (i + chipIndex) % 2));
  return {
    type: 'tile-result', v: 1, runKey, chipIndex, worker: 'w', write: { x: chipIndex * 4, y: 0, width: 4, height: 2 },
    cloud: bits, shadow: packBits(new Array(8).fill(0)), nodata: packBits(new Array(8).fill(0)), skipped: false,
    timings: { readMs: 0, inferenceMs: 0, cloudMs: null, shadowMs: null, thresholdMs: 0, modelLoadMs: 0 },
  };
}

/** Deliveries from one jobs() iteration, taken one at a time with a deadline. */
function puller(worker: WorkerTransport, maxInFlight = 8): { next(timeoutMs: number): Promise<JobDelivery | null> } {
  const it = worker.jobs(maxInFlight)[Symbol.asyncIterator]();
  let pending: Promise<IteratorResult<JobDelivery>> | null = null;
  return {
    async next(timeoutMs) {
      pending ??= it.next();
      const got = await Promise.race([pending, sleep(timeoutMs).then(() => null)]);
      if (!got) return null;
      pending = null;
      return got.done ? null : got.value;
    },
  };
}

for (const [name, make] of Object.entries(makers)) {
  describe(`transport contract: ${name}`, () => {
    let h: Harness;
    const withHarness = (fn: () => Promise<void>) => async () => {
      h = await make();
      try {
        await fn();
      } finally {
        await h.close();
      }
    };

    test('a job arrives decoded, counted from 1; nak with a delay redelivers it, counted 2, not before the delay', withHarness(async () => {
      const p = puller(h.worker);
      await h.coordinator.submit(job(3));
      const d1 = (await p.next(10_000))!;
      expect(d1.deliveries).toBe(1);
      expect(d1.job.chips[0]!.chipIndex).toBe(3);
      const t0 = performance.now();
      await d1.nak(800);
      const d2 = (await p.next(10_000))!;
      expect(performance.now() - t0).toBeGreaterThanOrEqual(700);
      expect(d2.deliveries).toBe(2);
      await d2.ack();
      expect(await p.next(ACK_WAIT_MS * 2)).toBeNull();
    }));

    test('a job on any lane reaches a lone worker: lanes decide who prefers a job, never whether it is delivered', withHarness(async () => {
      const p = puller(h.worker);
      for (let lane = 0; lane < JOB_LANES; lane++) await h.coordinator.submit(job(10 + lane), lane);
      const got: number[] = [];
      for (let i = 0; i < JOB_LANES; i++) {
        const d = (await p.next(10_000))!;
        got.push(d.job.chips[0]!.chipIndex);
        await d.ack();
      }
      expect(got.sort((x, y) => x - y)).toEqual(Array.from({ length: JOB_LANES }, (_, l) => 10 + l));
      expect(await p.next(ACK_WAIT_MS * 2)).toBeNull();
    }));

    test('finish drops the run\'s jobs still queued (a failed scene leaves no work behind), and no other run\'s', withHarness(async () => {
      for (let lane = 0; lane < 3; lane++) await h.coordinator.submit(job(20 + lane, 'run-a'), lane);
      await h.coordinator.submit(job(30, 'run-b'), 1);
      await h.coordinator.finish('run-a');
      const p = puller(h.worker);
      const d = (await p.next(10_000))!;
      expect(d.job.runKey).toBe('run-b');
      await d.ack();
      expect(await p.next(ACK_WAIT_MS * 2)).toBeNull();
    }));

    test('term: never delivered again', withHarness(async () => {
      const p = puller(h.worker);
      await h.coordinator.submit(job(1));
      const d = (await p.next(10_000))!;
      await d.term({ code: 'BAD_INPUT', message: 'hopeless' });
      expect(await p.next(ACK_WAIT_MS * 2.5)).toBeNull();
    }));

    test('a silent delivery is redelivered after the ack wait; working() heartbeats hold it', withHarness(async () => {
      const p = puller(h.worker);
      await h.coordinator.submit(job(5));
      const held = (await p.next(10_000))!;
      const beat = setInterval(() => void held.working(), ACK_WAIT_MS / 4);
      try {
        expect(await p.next(ACK_WAIT_MS * 2.5)).toBeNull();
      } finally {
        clearInterval(beat);
      }
      const again = (await p.next(ACK_WAIT_MS * 4))!;
      expect(again).not.toBeNull();
      expect(again.deliveries).toBe(2);
      expect(again.job.chips[0]!.chipIndex).toBe(5);
      await again.ack();
      expect(await p.next(ACK_WAIT_MS * 2)).toBeNull();
    }));

    test('a redelivered job carries its own copy of the inline pixels (no buffer shared with an earlier delivery)', withHarness(async () => {
      const p = puller(h.worker);
      const pixels = Uint16Array.from({ length: 12 * 4 * 2 }, (_, i) => i + 1);
      await h.coordinator.submit(job(0, 'run-a', pixels));
      const d1 = (await p.next(10_000))!;
      // What ChipPool.process does: the pixels move to a thread; here the buffer is detached the same way.
      structuredClone(d1.job.pixels, { transfer: [d1.job.pixels!.buffer as ArrayBuffer] });
      expect(d1.job.pixels!.length).toBe(0);
      await d1.nak(0);
      const d2 = (await p.next(10_000))!;
      expect(d2.job.pixels).toEqual(pixels);
      await d2.ack();
    }));

    test('malformed messages are rejected as BAD_MESSAGE, never delivered; good ones after them are', withHarness(async () => {
      const p = puller(h.worker);
      await h.injectJobBytes(new TextEncoder().encode('not msgpack at all \u00ff'));
      await h.injectJobBytes(encodeMessage({ ...job(2), v: 9 } as unknown as TileJob));
      await h.injectJobBytes(encodeMessage({ ...job(2), chips: [] }));
      await h.coordinator.submit(job(7));
      const d = (await p.next(10_000))!;
      expect(d.job.chips[0]!.chipIndex).toBe(7);
      await d.ack();
      expect(h.bad.map((e) => e.code)).toEqual(['BAD_MESSAGE', 'BAD_MESSAGE', 'BAD_MESSAGE']);
      expect(await p.next(ACK_WAIT_MS * 2)).toBeNull();
    }));

    test('outcomes reach the run\'s subscriber decoded; those published before it subscribed are replayed; duplicates are ignored by the stitch', withHarness(async () => {
      await h.worker.publish(result(0, 'run-b'));
      await sleep(100);
      const got: TileOutcome[] = [];
      const sub = await h.coordinator.subscribe('run-b', (o) => got.push(o));
      expect(sub.replayed).toBe(1);
      await h.worker.publish(result(1, 'run-b'));
      await h.worker.publish(result(1, 'run-b'));
      await h.worker.publish({ type: 'tile-failure', v: 1, runKey: 'run-b', chipIndex: 2, chips: [2], worker: 'w', deliveries: 4, error: { code: 'TRANSIENT_IO', message: 'gave up' } });
      for (let i = 0; i < 100 && got.length < 4; i++) await sleep(50);
      await sub.close();
      expect(got.map((o) => `${o.type}:${o.chipIndex}`)).toEqual(['tile-result:0', 'tile-result:1', 'tile-result:1', 'tile-failure:2']);
      expect((got[1] as TileResult).cloud).toEqual(result(1).cloud);
      const stitcher = new Stitcher(12, 2, 3, false);
      expect(got.filter((o): o is TileResult => o.type === 'tile-result').map((o) => stitcher.add(o))).toEqual([true, true, false]);
    }));

    test('a job\'s results published together arrive as the same outcomes, in order; over JetStream as one message', withHarness(async () => {
      const got: TileOutcome[] = [];
      const sub = await h.coordinator.subscribe('run-d', (o) => got.push(o));
      await Promise.all([4, 5, 6, 7].map((i) => h.worker.publish(result(i, 'run-d'))));
      // A failure goes on its own (and to the dead letters), never inside a bundle.
      await h.worker.publish({ type: 'tile-failure', v: 1, runKey: 'run-d', chipIndex: 8, chips: [8, 9], worker: 'w', deliveries: 4, error: { code: 'BAD_INPUT', message: 'no' } });
      for (let i = 0; i < 100 && got.length < 5; i++) await sleep(50);
      await sub.close();
      expect(got.map((o) => `${o.type}:${o.chipIndex}`)).toEqual(['tile-result:4', 'tile-result:5', 'tile-result:6', 'tile-result:7', 'tile-failure:8']);
      expect(got.slice(0, 4)).toEqual([4, 5, 6, 7].map((i) => result(i, 'run-d')));
      if (h.storedOutcomeMessages) expect(await h.storedOutcomeMessages('run-d')).toBe(2);
    }));

    test('run state survives until finish', withHarness(async () => {
      expect(await h.coordinator.getState('run-c')).toBeNull();
      await h.coordinator.putState('run-c', { publishedUpTo: 4, chips: 9 });
      expect(await h.coordinator.getState('run-c')).toEqual({ publishedUpTo: 4, chips: 9 });
      await h.coordinator.finish('run-c');
      expect(await h.coordinator.getState('run-c')).toBeNull();
    }));
  });
}
