/**
 * The Piscina pool that runs chips. Inference blocks its thread, so it never runs on the event
 * loop that talks to the transport.
 */
import { Piscina } from 'piscina';
import type { SceneSource } from '../raster/types.ts';
import { createTileCacheHandle, TILE_CACHE_DEFAULTS } from '../raster/tile-cache.ts';
import type { HttpReadOptions } from '../raster/http-range.ts';
import { fromErrorData } from '../shared/errors.ts';
import type { TileJob, TileResult } from '../shared/messages.ts';
import type { ChipReply, ChipTask, ChipThreadData, IoDelta } from './chip-thread.ts';

/** What the threads read since the pool started (worker metrics). */
export interface PoolIo {
  /** Http attempts by outcome: ok, retry (failed and tried again), error (given up). */
  httpRequests: { ok: number; retry: number; error: number };
  httpBytes: number;
  /** Compressed source tiles decoded. */
  decodes: number;
}

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
   * Default 320 MiB: on a full Sentinel-2 tile each source tile is then decoded about 1.03 times
   * (256 MiB: about 1.3 times; 160 MiB: about twice; no cache: every chip decodes all it touches). 0 = no cache.
   */
  tileCacheBytes?: number;
  /** Headers sent with every request to http(s) sources. Default: none. */
  httpHeaders?: Record<string, string>;
  /** How the threads' GeoTIFF reads over http retry and merge (raster/http-range.ts). Default HTTP_READ_DEFAULTS. */
  httpRead?: HttpReadOptions;
  /**
   * Jobs a thread holds at once, 1 to {@link MAX_JOBS_PER_THREAD}: 2 reads the next job while the
   * current one is in inference (I/O behind compute); more send the requests of jobs further
   * ahead, which a remote store's latency needs (docs/performance.md); 1 reads and infers one job
   * at a time. Default 2.
   */
  jobsPerThread?: number;
}

/** The most jobs a thread may hold: each holds a union-window buffer (about 17 MB for 4 chips). */
export const MAX_JOBS_PER_THREAD = 4;

/** Jobs a thread holds so that `maxInFlight` jobs pulled by a node of `threads` threads all start reading. */
export function jobsPerThreadFor(maxInFlight: number, threads: number): number {
  return Math.min(MAX_JOBS_PER_THREAD, Math.max(1, Math.ceil(maxInFlight / threads)));
}

export class ChipPool {
  private readonly piscina: Piscina;
  private readonly options: ChipPoolOptions;
  readonly io: PoolIo = { httpRequests: { ok: 0, retry: 0, error: 0 }, httpBytes: 0, decodes: 0 };

  constructor(options: ChipPoolOptions) {
    if (!Number.isInteger(options.threads) || options.threads < 1) {
      throw new RangeError(`options.threads must be a positive integer, got ${options.threads}`);
    }
    this.options = options;
    const cacheBytes = options.tileCacheBytes ?? TILE_CACHE_DEFAULTS.bytes;
    if (!Number.isInteger(cacheBytes) || cacheBytes < 0) throw new RangeError(`options.tileCacheBytes must be a non-negative integer, got ${cacheBytes}`);
    const jobsPerThread = options.jobsPerThread ?? 2;
    if (!Number.isInteger(jobsPerThread) || jobsPerThread < 1 || jobsPerThread > MAX_JOBS_PER_THREAD) {
      throw new RangeError(`options.jobsPerThread must be an integer from 1 to ${MAX_JOBS_PER_THREAD}, got ${jobsPerThread}`);
    }
    const workerData: ChipThreadData = {
      tileCache: cacheBytes > 0 ? createTileCacheHandle({ bytes: Math.max(cacheBytes, TILE_CACHE_DEFAULTS.slotBytes) }) : null,
      httpHeaders: { ...options.httpHeaders },
      httpRead: options.httpRead,
    };
    this.piscina = new Piscina({
      workerData,
      filename: new URL('./chip-thread-entry.mjs', import.meta.url).href,
      minThreads: options.threads,
      maxThreads: options.threads,
      idleTimeout: 60_000,
      // A thread's later jobs read while the first is in inference (see chip-thread.ts).
      concurrentTasksPerWorker: jobsPerThread,
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

  /**
   * Opens a scene's files in the threads ahead of its first job (a hint: a remote scene's headers
   * cost each thread one request per file, which its first reads then need not wait for). One
   * task per thread, which Piscina spreads over the threads ready for them; failures are left for
   * the jobs to report. Resolves when the opens are done (nobody needs to wait for it).
   */
  async prepare(source: SceneSource): Promise<void> {
    const opens = Array.from({ length: this.options.threads }, () => this.piscina.run(source, { name: 'open' }).catch(() => {}));
    await Promise.all(opens);
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
    this.addIo(reply.io);
    if (!reply.ok) throw fromErrorData(reply.error);
    return reply.results;
  }

  private addIo(d: IoDelta | undefined): void {
    if (!d) return;
    const r = this.io.httpRequests;
    r.ok += d.http.requests.ok;
    r.retry += d.http.requests.retry;
    r.error += d.http.requests.error;
    this.io.httpBytes += d.http.bytes;
    this.io.decodes += d.decodes;
  }

  /**
   * Lets the chips a thread is running finish, then ends the threads. Terminating a thread inside
   * onnxruntime's session.run aborts the whole process ("terminate called after throwing an
   * instance of 'Napi::Error'"), so jobs not yet started are dropped and running ones awaited,
   * at most `boundMs`, after which the threads are terminated regardless.
   */
  async close(boundMs = 30_000): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const bound = new Promise<'late'>((r) => (timer = setTimeout(() => r('late'), boundMs)));
    const closed = this.piscina.close({ force: true }).then(() => 'closed' as const, () => 'late' as const);
    const how = await Promise.race([closed, bound]);
    clearTimeout(timer);
    if (how === 'late') await this.piscina.destroy();
  }
}
