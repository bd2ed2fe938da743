/**
 * A worker node: pulls tile jobs from a transport, runs them in the chip pool, publishes one
 * result per chip, then acks. Retryable failures are nak'ed with backoff until the transport's delivery
 * limit, then published as failures (dead letter) and terminated.
 */
import { asCloudMaskError, type ErrorData } from '../shared/errors.ts';
import type { TileFailure, TileResult } from '../shared/messages.ts';
import type { JobDelivery, WorkerTransport } from '../shared/transport.ts';
import { AllowedSources } from './allow.ts';
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
  /**
   * After `transport.stop()`, how long to wait for the chips in flight, ms; then they are
   * handed back (nak'ed for another worker) and the node returns. Default: no bound.
   */
  drainMs?: number;
  onEvent?: (event: WorkerEvent) => void;
}

const defaultBackoff = (deliveries: number): number => Math.min(500 * 2 ** (deliveries - 1), 10_000);

/** A delivery the node is working on; `handedBack` once a bounded shutdown gave it up. */
interface Running {
  delivery: JobDelivery;
  handedBack: boolean;
}

async function handle(running: Running, transport: WorkerTransport, pool: ChipPool, allowed: AllowedSources, opts: WorkerNodeOptions): Promise<void> {
  const { delivery } = running;
  const { job } = delivery;
  const beat = setInterval(() => void delivery.working().catch(() => {}), opts.heartbeatMs ?? 5000);
  const t0 = performance.now();
  try {
    // Inline pixels are in the job: the worker reads nothing, so there is nothing to refuse.
    if (!job.pixels) await allowed.assert(job.source);
    const results = await pool.process(job);
    // Handed back during shutdown: another worker owns the job now.
    if (running.handedBack) return;
    const t1 = performance.now();
    await Promise.all(results.map((r) => transport.publish(r)));
    const publishMs = performance.now() - t1;
    await delivery.ack();
    opts.onEvent?.({ type: 'job-done', results, totalMs: performance.now() - t0, publishMs });
  } catch (err) {
    if (running.handedBack) return;
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

/** How a node ended: jobs still running when the drain bound passed were handed back. */
export interface NodeStopped {
  /** Chips whose jobs were nak'ed at once for another worker. */
  handedBack: number[];
}

/**
 * Runs until `transport.stop()`; then waits for the chips in flight to finish, at most
 * `drainMs`, and hands back (nak, no delay) the jobs still running after that.
 */
export async function runWorkerNode(transport: WorkerTransport, pool: ChipPool, opts: WorkerNodeOptions): Promise<NodeStopped> {
  const inFlight = new Map<Promise<void>, Running>();
  const allowed = new AllowedSources(opts.allowRoots);
  for await (const delivery of transport.jobs(opts.maxInFlight ?? pool.threads * 2)) {
    const running: Running = { delivery, handedBack: false };
    const p: Promise<void> = handle(running, transport, pool, allowed, opts).finally(() => inFlight.delete(p));
    inFlight.set(p, running);
  }
  const all = Promise.all(inFlight.keys()).then(() => true);
  if (opts.drainMs === undefined) await all;
  if (opts.drainMs === undefined || (await within(all, opts.drainMs))) return { handedBack: [] };
  const handedBack: number[] = [];
  for (const running of inFlight.values()) {
    running.handedBack = true;
    handedBack.push(...running.delivery.job.chips.map((c) => c.chipIndex));
    await running.delivery.nak(0).catch(() => {});
  }
  return { handedBack };
}

/** True when `done` resolves within `ms`; the timer goes either way. */
async function within(done: Promise<boolean>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
  try {
    return await Promise.race([done, late]);
  } finally {
    clearTimeout(timer);
  }
}
