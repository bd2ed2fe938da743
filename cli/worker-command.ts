/**
 * `improve-cloud-mask worker --nats URL`: a worker node. Before the first pull it checks its
 * models and allowed roots (a broken worker exits with one line instead of failing jobs one by
 * one). SIGTERM/SIGINT: stop pulling, finish the chips in flight for at most --ack-wait-ms (then
 * hand them back to the queue), close the pool, drain the connection for at most a few seconds;
 * each step runs even if one fails, so shutdown is bounded whatever the server's state.
 */
import os from 'node:os';
import { JOB_LANES } from '../shared/subjects.ts';
import { JetStreamWorkerTransport } from '../transport/jetstream-worker.ts';
import { formatLanes } from '../shared/lanes.ts';
import { runWorkerNode, type WorkerEvent } from '../worker/node.ts';
import { ChipPool, jobsPerThreadFor } from '../worker/pool.ts';
import { createWorkerMetrics } from '../worker/metrics.ts';
import { openCluster } from './cluster.ts';
import { startMetrics } from './metrics-server.ts';
import { closeWithin } from '../transport/connect.ts';
import { resolveAllowedRoots } from '../worker/allow.ts';
import { checkNumericFlags, httpHeadersFromFlags, maxInFlightFromFlags, paramsFromFlags, threadsFromFlags, type Flags } from './options.ts';
import { preflightModels, type CliEnv } from './run-command.ts';

/** How long a stopping worker waits for its connection to drain (acks and results on their way). */
const DRAIN_MS = 5000;

export async function workerCommand(flags: Flags, env: CliEnv): Promise<number> {
  const workerId = typeof flags['worker-id'] === 'string' ? flags['worker-id'] : `${os.hostname()}-${process.pid}`;
  checkNumericFlags(flags);
  const threads = threadsFromFlags(flags);
  const maxInFlight = maxInFlightFromFlags(flags, threads * 2);
  const modelsDir = (flags['models-dir'] as string | undefined) ?? env.modelsDir;
  const rootsFlag = flags['allow-root'];
  // Preflight, before a connection or a thread exists: a broken worker must not pull jobs.
  const allowRoots = await resolveAllowedRoots(Array.isArray(rootsFlag) && rootsFlag.length > 0 ? rootsFlag : [process.cwd()]);
  // Parsed before connecting: a malformed header is a usage error, not a half-started worker.
  const httpHeaders = httpHeadersFromFlags(flags, env.httpHeaderLines ?? []);
  await preflightModels(paramsFromFlags(flags), modelsDir);
  const metricsServer = await startMetrics(flags, env.log);
  let cluster: Awaited<ReturnType<typeof openCluster>>;
  try {
    cluster = await openCluster(flags, `icm-worker-${workerId}`, env.log);
  } catch (err) {
    await metricsServer.close();
    throw err;
  }
  const { nc, js } = cluster;
  const pool = new ChipPool({ threads, modelsDir, worker: workerId, httpHeaders, jobsPerThread: jobsPerThreadFor(maxInFlight, threads) });
  const metrics = createWorkerMetrics(metricsServer.registry, pool);
  const transport = new JetStreamWorkerTransport(nc, {
    ...js,
    worker: workerId,
    // Which columns of a scene this worker keeps to (docs/performance.md, affinity).
    onLanes: (owned, members) => env.log(`worker ${workerId}: lanes ${formatLanes(owned)} of 0-${JOB_LANES - 1} (${members} worker${members === 1 ? '' : 's'} alive)`),
    onBadMessage: (subject, error) => {
      metrics.onBadMessage();
      js.onBadMessage?.(subject, error);
    },
  });
  metricsServer.setReady(true);
  const counts = { done: 0, failed: 0 };
  const log = eventLog(env, Boolean(flags['log-chips']), counts);
  const ackWaitMs = js.ackWaitMs ?? 30_000;
  const stop = (signal: string): void => {
    env.log(`worker ${workerId}: ${signal}: stopping (finishing chips in flight for at most ${ackWaitMs} ms)`);
    transport.stop();
    // The last resort, should a step hang all the same: the jobs not acked go to other workers anyway.
    const bound = ackWaitMs + DRAIN_MS + 10_000;
    setTimeout(() => {
      env.log(`worker ${workerId}: not stopped ${bound} ms after ${signal}; exiting (its unacked jobs are redelivered after the ack wait)`);
      process.exit(1);
    }, bound).unref();
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
  env.log(`worker ${workerId}: ${threads} threads, pulling from ${String(flags.nats ?? 'nats://127.0.0.1:4222')}, allowed roots: ${allowRoots.join(', ')}`);
  try {
    const stopped = await runWorkerNode(transport, pool, {
      worker: workerId,
      allowRoots,
      maxInFlight,
      // Past the ack wait the server redelivers anyway: waiting longer only delays the exit.
      drainMs: ackWaitMs,
      heartbeatMs: Math.max(500, Math.floor(ackWaitMs / 3)),
      onEvent: (e) => {
        metrics.onEvent(e);
        log(e);
      },
    });
    if (stopped.handedBack.length > 0) env.log(`worker ${workerId}: chips still running after ${ackWaitMs} ms handed back to the queue: ${stopped.handedBack.join(', ')}`);
  } finally {
    metricsServer.setReady(false);
    await pool.close().catch((err) => env.log(`closing the pool: ${(err as Error).message}`));
    const undrained = await closeWithin(nc, DRAIN_MS);
    if (undrained) env.log(`worker ${workerId}: NATS connection closed undrained (${undrained}; server unreachable?)`);
  }
  await metricsServer.close();
  const { own, helped } = transport.laneStats;
  env.log(`worker ${workerId}: stopped after ${counts.done} chips (${counts.failed} dead-lettered); jobs from its own lanes ${own}, from other lanes ${helped}`);
  return 0;
}

/** A worker's log lines (and --log-chips lines on stdout) for its node's events. */
function eventLog(env: CliEnv, logChips: boolean, counts: { done: number; failed: number }): (e: WorkerEvent) => void {
  return (e) => {
    if (e.type === 'job-done') {
      counts.done += e.results.length;
      if (logChips) for (const r of e.results) process.stdout.write(`chip-done ${r.runKey} ${r.chipIndex} ${(e.totalMs / e.results.length).toFixed(0)}ms\n`);
    } else if (e.type === 'chip-retry') {
      env.log(`chips ${e.runKey}#${e.chips.join(',')}: ${e.error.code}: ${e.error.message} (delivery ${e.deliveries}, will retry)`);
    } else if (e.type === 'chip-failed') {
      counts.failed++;
      env.log(`chips ${e.failure.runKey}#${e.failure.chips.join(',')}: dead-lettered after ${e.failure.deliveries} deliveries: ${e.failure.error.code}: ${e.failure.error.message}`);
    }
  };
}
