/**
 * `improve-cloud-mask worker --nats URL`: a worker node. SIGTERM/SIGINT: stop pulling, finish
 * the chips in flight, close the pool, drain the connection; each step runs even if one fails.
 */
import os from 'node:os';
import { JetStreamWorkerTransport } from '../transport/jetstream.ts';
import { runWorkerNode } from '../worker/node.ts';
import { ChipPool } from '../worker/pool.ts';
import { createWorkerMetrics } from '../worker/metrics.ts';
import { openCluster } from './cluster.ts';
import { startMetrics } from './metrics-server.ts';
import { defaultThreads, httpHeadersFromFlags, positiveInt, type Flags } from './options.ts';
import type { CliEnv } from './run-command.ts';

export async function workerCommand(flags: Flags, env: CliEnv): Promise<number> {
  const workerId = typeof flags['worker-id'] === 'string' ? flags['worker-id'] : `${os.hostname()}-${process.pid}`;
  const threads = positiveInt(flags, 'threads', defaultThreads());
  const modelsDir = (flags['models-dir'] as string | undefined) ?? env.modelsDir;
  const rootsFlag = flags['allow-root'];
  const allowRoots = Array.isArray(rootsFlag) && rootsFlag.length > 0 ? rootsFlag : [process.cwd()];
  // Parsed before connecting: a malformed header is a usage error, not a half-started worker.
  const httpHeaders = httpHeadersFromFlags(flags, env.httpHeaderLines ?? []);
  const metricsServer = await startMetrics(flags, env.log);
  const { nc, js } = await openCluster(flags, `icm-worker-${workerId}`, env.log);
  const pool = new ChipPool({ threads, modelsDir, worker: workerId, httpHeaders });
  const metrics = createWorkerMetrics(metricsServer.registry, pool);
  const transport = new JetStreamWorkerTransport(nc, {
    ...js,
    onBadMessage: (subject, error) => {
      metrics.onBadMessage();
      js.onBadMessage?.(subject, error);
    },
  });
  metricsServer.setReady(true);
  let done = 0;
  let failed = 0;
  const stop = (signal: string): void => {
    env.log(`worker ${workerId}: ${signal}: stopping (finishing chips in flight)`);
    transport.stop();
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
  env.log(`worker ${workerId}: ${threads} threads, pulling from ${String(flags.nats ?? 'nats://127.0.0.1:4222')}, allowed roots: ${allowRoots.join(', ')}`);
  try {
    await runWorkerNode(transport, pool, {
      worker: workerId,
      allowRoots,
      maxInFlight: positiveInt(flags, 'max-in-flight', threads * 2),
      heartbeatMs: Math.max(500, Math.floor((js.ackWaitMs ?? 30_000) / 3)),
      onEvent: (e) => {
        metrics.onEvent(e);
        if (e.type === 'job-done') {
          done += e.results.length;
          if (flags['log-chips']) for (const r of e.results) process.stdout.write(`chip-done ${r.runKey} ${r.chipIndex} ${(e.totalMs / e.results.length).toFixed(0)}ms\n`);
        } else if (e.type === 'chip-retry') {
          env.log(`chips ${e.runKey}#${e.chips.join(',')}: ${e.error.code}: ${e.error.message} (delivery ${e.deliveries}, will retry)`);
        } else if (e.type === 'chip-failed') {
          failed++;
          env.log(`chips ${e.failure.runKey}#${e.failure.chips.join(',')}: dead-lettered after ${e.failure.deliveries} deliveries: ${e.failure.error.code}: ${e.failure.error.message}`);
        }
      },
    });
  } finally {
    metricsServer.setReady(false);
    await pool.close().catch((err) => env.log(`closing the pool: ${(err as Error).message}`));
    await nc.drain().catch((err) => env.log(`draining NATS: ${(err as Error).message}`));
  }
  await metricsServer.close();
  env.log(`worker ${workerId}: stopped after ${done} chips (${failed} dead-lettered)`);
  return 0;
}
