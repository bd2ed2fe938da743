/**
 * The embedded default: coordinator and worker node in one process, joined by the in-process
 * transport. Same pipeline code as the cluster, no server.
 */
import os from 'node:os';
import path from 'node:path';
import { EmbeddedTransport } from '../transport/embedded.ts';
import { runWorkerNode, type WorkerEvent } from '../worker/node.ts';
import { ChipPool, MAX_JOBS_PER_THREAD } from '../worker/pool.ts';

export interface EmbeddedOptions {
  threads: number;
  modelsDir: string;
  /** Headers for http(s) sources, given to the chip threads. */
  httpHeaders?: Record<string, string>;
  onWorkerEvent?: (e: WorkerEvent) => void;
}

export interface Embedded {
  transport: EmbeddedTransport;
  pool: ChipPool;
  close(): Promise<void>;
}

export function startEmbedded(options: EmbeddedOptions): Embedded {
  const transport = new EmbeddedTransport({ maxDeliveries: 3 });
  // One process has the machine to itself: no other worker waits for the jobs it pulls, so each
  // thread holds as many as it may, and a remote store's latency passes behind three jobs' compute.
  const jobsPerThread = MAX_JOBS_PER_THREAD;
  const pool = new ChipPool({ threads: options.threads, modelsDir: options.modelsDir, worker: `embedded@${os.hostname()}`, httpHeaders: options.httpHeaders, jobsPerThread });
  // The coordinator's hint that a scene is coming: the threads open its files while it plans.
  transport.onPrepare((source) => void pool.prepare(source));
  // The user's own run reads whatever the user named: every path and URL is allowed.
  const node = runWorkerNode(transport, pool, {
    worker: 'embedded',
    allowRoots: [path.parse(process.cwd()).root, 'http://', 'https://'],
    maxInFlight: options.threads * jobsPerThread,
    onEvent: options.onWorkerEvent,
  });
  return {
    transport,
    pool,
    close: async () => {
      transport.stop();
      await node;
      await pool.close();
    },
  };
}
