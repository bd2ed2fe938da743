/**
 * The Piscina pool that runs chips. Inference blocks its thread, so it never runs on the event
 * loop that talks to the transport.
 */
import { Piscina } from 'piscina';
import { createTileCacheHandle, TILE_CACHE_DEFAULTS } from '../raster/tile-cache.ts';
import { fromErrorData } from '../shared/errors.ts';
import type { TileJob, TileResult } from '../shared/messages.ts';
import type { ChipReply, ChipTask, ChipThreadData } from './chip-thread.ts';

export interface ChipPoolOptions {
  /** Threads running chips. Default: 1. */
  threads: number;
  /** Directory the model names resolve in. */
  modelsDir: string;
  /** onnxruntime intra-op threads per session. Default: 1 (the pool gives the parallelism). */
  intraOpThreads?: number;
  /** Worker identity written into results. */
  worker: string;
  /**
   * Bytes of decoded source tiles kept for all threads together (see raster/tile-cache.ts).
   * Default 256 MiB: on a full Sentinel-2 tile each source tile is then decoded about 1.15 times
   * (160 MiB: about twice; no cache: every chip decodes all it touches). 0 = no cache.
   */
  tileCacheBytes?: number;
  /** Headers sent with every request to http(s) sources. Default: none. */
  httpHeaders?: Record<string, string>;
}

export class ChipPool {
  private readonly piscina: Piscina;
  private readonly options: ChipPoolOptions;

  constructor(options: ChipPoolOptions) {
    if (!Number.isInteger(options.threads) || options.threads < 1) {
      throw new RangeError(`options.threads must be a positive integer, got ${options.threads}`);
    }
    this.options = options;
    const cacheBytes = options.tileCacheBytes ?? TILE_CACHE_DEFAULTS.bytes;
    if (!Number.isInteger(cacheBytes) || cacheBytes < 0) throw new RangeError(`options.tileCacheBytes must be a non-negative integer, got ${cacheBytes}`);
    const workerData: ChipThreadData = {
      tileCache: cacheBytes > 0 ? createTileCacheHandle({ bytes: Math.max(cacheBytes, TILE_CACHE_DEFAULTS.slotBytes) }) : null,
      httpHeaders: { ...options.httpHeaders },
    };
    this.piscina = new Piscina({
      workerData,
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
