/**
 * A worker node: pulls tile jobs from a transport, runs them in the chip pool, publishes one
 * result per chip, then acks. Retryable failures are nak'ed with backoff until the transport's delivery
 * limit, then published as failures (dead letter) and terminated.
 */
import { asCloudMaskError, type ErrorData } from '../shared/errors.ts';
import type { TileFailure, TileResult } from '../shared/messages.ts';
import type { JobDelivery, WorkerTransport } from '../shared/transport.ts';
import { assertAllowed } from './allow.ts';
import type { ChipPool } from './pool.ts';

export type WorkerEvent =
  | { type: 'job-done'; results: TileResult[]; totalMs: number; publishMs: number }
  | { type: 'chip-retry'; chips: number[]; runKey: string; error: ErrorData; deliveries: number }
  | { type: 'chip-failed'; failure: TileFailure };

export interface WorkerNodeOptions {
  /** Worker identity in results and logs. */
  worker: string;
  /** Chips in flight on this node (pulled and unfinished). Default: 2 x pool threads. */
  maxInFlight?: number;
  /** Directories and URL prefixes jobs may read from. */
  allowRoots: string[];
  /** How often to tell the transport a long chip is still being worked on, ms. Default 5000. */
  heartbeatMs?: number;
  /** Delay before a retried job is redelivered, ms, by delivery count. */
  backoffMs?: (deliveries: number) => number;
  onEvent?: (event: WorkerEvent) => void;
}

const defaultBackoff = (deliveries: number): number => Math.min(500 * 2 ** (deliveries - 1), 10_000);

async function handle(delivery: JobDelivery, transport: WorkerTransport, pool: ChipPool, opts: WorkerNodeOptions): Promise<void> {
  const { job } = delivery;
  const beat = setInterval(() => void delivery.working().catch(() => {}), opts.heartbeatMs ?? 5000);
  const t0 = performance.now();
  try {
    assertAllowed(job.source, opts.allowRoots);
    const results = await pool.process(job);
    const t1 = performance.now();
    await Promise.all(results.map((r) => transport.publish(r)));
    const publishMs = performance.now() - t1;
    await delivery.ack();
    opts.onEvent?.({ type: 'job-done', results, totalMs: performance.now() - t0, publishMs });
  } catch (err) {
    const error = asCloudMaskError(err);
    if (error.retryable && delivery.deliveries < transport.maxDeliveries) {
      opts.onEvent?.({ type: 'chip-retry', chips: job.chips.map((c) => c.chipIndex), runKey: job.runKey, error: error.toData(), deliveries: delivery.deliveries });
      await delivery.nak((opts.backoffMs ?? defaultBackoff)(delivery.deliveries)).catch(() => {});
      return;
    }
    const failure: TileFailure = {
      type: 'tile-failure',
      v: 1,
      runKey: job.runKey,
      chipIndex: job.chips[0].chipIndex,
      chips: job.chips.map((c) => c.chipIndex),
      worker: opts.worker,
      deliveries: delivery.deliveries,
      error: error.toData(),
    };
    try {
      await transport.publish(failure);
      await delivery.term(failure.error);
    } catch {
      // The failure could not be published: leave the job for redelivery rather than lose it.
      await delivery.nak(1000).catch(() => {});
      return;
    }
    opts.onEvent?.({ type: 'chip-failed', failure });
  } finally {
    clearInterval(beat);
  }
}

/** Runs until `transport.stop()`; then waits for the chips in flight to finish. */
export async function runWorkerNode(transport: WorkerTransport, pool: ChipPool, opts: WorkerNodeOptions): Promise<void> {
  const inFlight = new Set<Promise<void>>();
  for await (const delivery of transport.jobs(opts.maxInFlight ?? pool.threads * 2)) {
    const p = handle(delivery, transport, pool, opts).finally(() => inFlight.delete(p));
    inFlight.add(p);
  }
  await Promise.all(inFlight);
}
