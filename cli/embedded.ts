/**
 * The embedded default: coordinator and worker node in one process, joined by the in-process
 * transport. Same pipeline code as the cluster, no server.
 */
import os from 'node:os';
import path from 'node:path';
import { EmbeddedTransport } from '../transport/embedded.ts';
import { runWorkerNode, type WorkerEvent } from '../worker/node.ts';
import { ChipPool } from '../worker/pool.ts';

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
  const pool = new ChipPool({ threads: options.threads, modelsDir: options.modelsDir, worker: `embedded@${os.hostname()}`, httpHeaders: options.httpHeaders });
  // The user's own run reads whatever the user named: every path and URL is allowed.
  const node = runWorkerNode(transport, pool, {
    worker: 'embedded',
    allowRoots: [path.parse(process.cwd()).root, 'http://', 'https://'],
    maxInFlight: options.threads * 2,
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
