/**
 * The archive tier's commands over NATS: `submit` (queue an archive's scenes), `coordinator`
 * (a long-running service serving the scene queue), `status` and `report` (from the records).
 */
import { existsSync } from 'node:fs';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { NatsConnection } from '@nats-io/transport-node';
import { createArchiveMetrics } from '../coordinator/archive-metrics.ts';
import { serveScenes } from '../coordinator/scene-service.ts';
import { itemPathFor, writeStacCollection } from '../coordinator/stac.ts';
import { CloudMaskError } from '../shared/errors.ts';
import { archiveStatus, checkArchiveName, type ArchiveStatus } from '../shared/scene-jobs.ts';
import type { SceneQueue } from '../shared/transport.ts';
import { openCluster } from './cluster.ts';
import { paramsFromFlags, requireString, scenesInFlightFromFlags, type Flags } from './options.ts';
import { formatDuration } from './progress.ts';
import type { CliEnv } from './env.ts';
import { preflightModels, withCoordinator } from './run-command.ts';
import { openSceneQueue, outputIsCurrent, sceneJobs, scenesFromFlags, sceneRunner } from './scene-runner.ts';

function needNats(flags: Flags, command: string): void {
  if (typeof flags.nats !== 'string') throw new CloudMaskError('BAD_OPTION', `${command} needs --nats URL (the scene queue lives in JetStream)`);
}

/** Connects, ensures the topology, runs `fn` with the scene queue, drains. */
async function withQueue<T>(flags: Flags, env: CliEnv, command: string, fn: (queue: SceneQueue, nc: NatsConnection) => Promise<T>): Promise<T> {
  needNats(flags, command);
  const { nc } = await openCluster(flags, `icm-${command}-${process.pid}`, env.log);
  try {
    return await fn(await openSceneQueue({ nc }, flags), nc);
  } finally {
    await nc.drain().catch(() => {});
  }
}

export async function submitCommand(flags: Flags, env: CliEnv): Promise<number> {
  // Checked first: a refused submission leaves nothing behind (not even the output folder).
  needNats(flags, 'submit');
  const archive = checkArchiveName(requireString(flags, 'archive', 'submit'));
  const outDir = path.resolve(requireString(flags, 'out-dir', 'submit'));
  const { scenes, skipped, source } = await scenesFromFlags(flags, 'submit', env);
  for (const s of skipped) env.log(`submit: skipped ${s.id}: ${s.reason}`);
  const params = paramsFromFlags(flags);
  await preflightModels(params, (flags['models-dir'] as string | undefined) ?? env.modelsDir);
  await mkdir(outDir, { recursive: true });
  const jobs = sceneJobs(archive, scenes, outDir, params, Boolean(flags.force));
  const { queued, notQueued } = await withQueue(flags, env, 'submit', (queue) => {
    const now = Date.now();
    return queue.submit({ name: archive, params, outDir, source, createdAt: now, submittedAt: now }, jobs);
  });
  const result = { archive, scenes: jobs.length, queued: queued.length, notQueued: notQueued.map((r) => ({ name: r.name, state: r.state })) };
  if (flags.json) process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  const byState = new Map<string, number>();
  for (const r of notQueued) byState.set(r.state, (byState.get(r.state) ?? 0) + 1);
  const already = [...byState].map(([s, n]) => `${n} ${s}`).join(', ');
  env.log(`submit: archive ${archive}: ${queued.length} of ${jobs.length} scenes queued${already ? ` (already: ${already})` : ''}`);
  return 0;
}

export async function coordinatorCommand(flags: Flags, env: CliEnv): Promise<number> {
  needNats(flags, 'coordinator');
  const id = typeof flags['coordinator-id'] === 'string' ? flags['coordinator-id'] : `${os.hostname()}-${process.pid}`;
  const modelsDir = (flags['models-dir'] as string | undefined) ?? env.modelsDir;
  const scenesInFlight = scenesInFlightFromFlags(flags);
  await withCoordinator(flags, env, modelsDir, async (ctx) => {
    const queue = await openSceneQueue(ctx, flags);
    createArchiveMetrics(ctx.registry, queue);
    const runner = sceneRunner(ctx, flags, env, modelsDir);
    const service = serveScenes(queue, {
      coordinator: id,
      scenesInFlight,
      run: runner.run,
      alreadyDone: outputIsCurrent,
      log: env.log,
      onEvent: (e) => {
        if (e.type === 'scene-claimed') env.log(`coordinator ${id}: scene ${e.job.archive}/${e.job.name} (delivery ${e.deliveries})`);
        else if (e.type === 'scene-finished') env.log(`coordinator ${id}: scene ${e.record.archive}/${e.record.name} ${e.record.state}${e.record.reason ? `: ${e.record.reason}` : ''}`);
        else if (e.type === 'scene-requeued') env.log(`coordinator ${id}: scene ${e.record.archive}/${e.record.name} back in the queue: ${e.record.reason}`);
      },
    });
    // First signal: stop pulling and finish the scenes in flight; a second: hand them back now.
    let signals = 0;
    const onSignal = (signal: string): void => {
      if (++signals === 1) {
        env.log(`coordinator ${id}: ${signal}: stopping (finishing the scenes in flight; again to hand them back)`);
        service.stop();
      } else {
        env.log(`coordinator ${id}: ${signal}: handing the scenes in flight back to the queue`);
        void service.handBack().then(() => process.exit(0));
      }
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
    env.log(`coordinator ${id}: serving the scene queue (${scenesInFlight} scenes in flight)`);
    try {
      await service.done;
    } finally {
      await runner.close();
    }
  });
  env.log(`coordinator ${id}: stopped`);
  return 0;
}

async function statusOf(queue: SceneQueue, archive: string): Promise<ArchiveStatus> {
  if (!(await queue.getArchive(archive))) throw new CloudMaskError('BAD_OPTION', `no archive named ${archive} (submitted archives: ${(await queue.archives()).join(', ') || 'none'})`);
  return archiveStatus(archive, await queue.records(archive), await queue.coordinators(), await queue.lag());
}

/** The archive's name: `status NAME` (cli/main.ts turns it into --archive) or --archive. */
function archiveArg(flags: Flags, command: string): string {
  const name = typeof flags.archive === 'string' ? flags.archive : undefined;
  if (!name) throw new CloudMaskError('BAD_OPTION', `${command} needs an archive name: ${command} NAME --nats URL`);
  return checkArchiveName(name);
}

export function formatStatus(s: ArchiveStatus): string {
  const lines = [
    `archive ${s.archive}: ${s.total} scenes: ${s.queued} queued, ${s.running} running, ${s.done} done, ${s.skipped} skipped, ${s.failed} failed`,
    `  rate  ${s.scenesPerHour === null ? '?' : `${s.scenesPerHour.toFixed(1)} scenes/h`}   ETA ${s.etaSeconds === null ? '?' : formatDuration(s.etaSeconds)}   queue lag ${s.queueLag ?? '?'}`,
    `  coordinators alive: ${s.coordinatorsAlive.length ? s.coordinatorsAlive.join(', ') : 'none'}`,
  ];
  for (const [id, c] of Object.entries(s.coordinators)) lines.push(`  ${id}: ${c.done} done, ${c.running} running, ${c.failed} failed`);
  for (const f of s.failedScenes) lines.push(`  failed ${f.name}: ${f.reason ?? '?'}`);
  return lines.join('\n');
}

export async function statusCommand(flags: Flags, env: CliEnv): Promise<number> {
  const archive = archiveArg(flags, 'status');
  const status = await withQueue(flags, env, 'status', (queue) => statusOf(queue, archive));
  process.stdout.write(flags.json ? `${JSON.stringify(status, null, 2)}\n` : `${formatStatus(status)}\n`);
  return 0;
}

export async function reportCommand(flags: Flags, env: CliEnv): Promise<number> {
  const archive = archiveArg(flags, 'report');
  const report = await withQueue(flags, env, 'report', async (queue) => {
    const status = await statusOf(queue, archive);
    const record = await queue.getArchive(archive);
    const scenes = (await queue.records(archive)).sort((a, b) => a.name.localeCompare(b.name));
    return { generatedAt: new Date().toISOString(), archive: record, status, scenes };
  });
  const out = typeof flags.out === 'string' ? flags.out : path.join(report.archive!.outDir, 'report.json');
  await mkdir(path.dirname(path.resolve(out)), { recursive: true });
  await writeFile(`${out}.tmp`, `${JSON.stringify(report, null, 2)}\n`);
  await rename(`${out}.tmp`, out);
  env.log(`report: archive ${archive}: ${report.status.done} done, ${report.status.failed} failed of ${report.status.total} -> ${out}`);
  // The archive's STAC collection, where this machine sees the output folder (the shared volume).
  const outDir = report.archive!.outDir;
  if (existsSync(outDir)) {
    const items = report.scenes.filter((r) => r.state === 'done' || r.state === 'skipped').map((r) => itemPathFor(r.output)).filter((p) => existsSync(p));
    const collection = await writeStacCollection(outDir, { id: archive, description: `Cloud and cloud-shadow masks (improve-cloud-mask) of archive ${archive} (${report.status.total} scenes)`, items });
    env.log(`report: STAC collection of ${items.length} items -> ${collection}`);
  }
  return 0;
}
