/**
 * The Piscina pool that runs chips. Inference blocks its thread, so it never runs on the event
 * loop that talks to the transport.
 */
import { Piscina } from 'piscina';
import { fromErrorData } from '../shared/errors.ts';
import type { TileJob, TileResult } from '../shared/messages.ts';
import type { ChipReply, ChipTask } from './chip-thread.ts';

export interface ChipPoolOptions {
  /** Threads running chips. Default: 1. */
  threads: number;
  /** Directory the model names resolve in. */
  modelsDir: string;
  /** onnxruntime intra-op threads per session. Default: 1 (the pool gives the parallelism). */
  intraOpThreads?: number;
  /** Worker identity written into results. */
  worker: string;
}

export class ChipPool {
  private readonly piscina: Piscina;
  private readonly options: ChipPoolOptions;

  constructor(options: ChipPoolOptions) {
    if (!Number.isInteger(options.threads) || options.threads < 1) {
      throw new RangeError(`options.threads must be a positive integer, got ${options.threads}`);
    }
    this.options = options;
    this.piscina = new Piscina({
      filename: new URL('./chip-thread-entry.mjs', import.meta.url).href,
      minThreads: options.threads,
      maxThreads: options.threads,
      idleTimeout: 60_000,
      // One chip per thread at a time; the queue holds what the node has pulled.
      concurrentTasksPerWorker: 1,
    });
  }

  get threads(): number {
    return this.options.threads;
  }

  /** Fraction of thread time spent running tasks since the pool started (0..1). */
  get utilization(): number {
    return this.piscina.utilization;
  }

  get queueSize(): number {
    return this.piscina.queueSize;
  }

  /** Runs one job; inline pixels are moved to the thread, not copied. Rejects with CloudMaskError. */
  async process(job: TileJob): Promise<TileResult[]> {
    const task: ChipTask = {
      job,
      worker: this.options.worker,
      modelsDir: this.options.modelsDir,
      intraOpThreads: this.options.intraOpThreads ?? 1,
    };
    const transferList = job.pixels ? [job.pixels.buffer as ArrayBuffer] : undefined;
    const reply = (await this.piscina.run(task, { transferList })) as ChipReply;
    if (!reply.ok) throw fromErrorData(reply.error);
    return reply.results;
  }

  async close(): Promise<void> {
    await this.piscina.destroy();
  }
}
