/**
 * Coordinator capacity (`npm run bench -- --coordinator`): how many full tiles a minute one
 * long-running coordinator gets through, and two sharing the scene queue, when workers cost
 * nothing. Workers are replayed: one real run of the scene (2 real workers) is recorded, then a
 * replay worker answers every tile job with the recorded result of its chip, so the
 * coordinators still plan, publish, stitch, merge and write everything (one output is compared
 * with the real run's). Reports wall-clock tiles a minute (first scene claimed to last written)
 * and coordinator CPU-seconds per tile, total (/proc, after start-up) and by stage (wall seconds
 * from the stage metrics).
 */
import { mkdir, rm, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { fromFile } from 'geotiff';
import { COORDINATOR_METRICS } from '../shared/metric-names.ts';
import type { TileResult } from '../shared/messages.ts';
import { names } from '../shared/subjects.ts';
import { ensureSceneTopology, JetStreamSceneQueue } from '../transport/jetstream-scenes.ts';
import { ensureTopology } from '../transport/jetstream.ts';
import { JetStreamWorkerTransport } from '../transport/jetstream-worker.ts';
import { outcomesFromWire } from '../transport/outcome-wire.ts';
import { startNatsServer, type NatsServer } from '../test/helpers/nats-server.ts';
import { metricsUrl, processSeconds, scrape, spawnCli, type CliProc } from './procs.ts';
import { CACHE_DIR, type BenchScene } from './scene.ts';

export interface CoordinatorRun {
  coordinators: number;
  scenes: number;
  /** First scene claimed to last scene written, seconds. */
  wallSeconds: number;
  tilesPerMinute: number;
  /** User + system CPU of the coordinator processes after start-up, per tile. */
  cpuSecondsPerTile: number;
  /** CPU seconds per tile of the rest of the machine's work: the bench process (replay worker, polling) and nats-server. */
  otherCpuSecondsPerTile: { replay: number; natsServer: number };
  /** Stage wall seconds per tile, summed over the coordinators (stage metrics). */
  stageSecondsPerTile: Record<'plan' | 'stitch' | 'merge' | 'write', number>;
  /** One output of this run equals the real run's output, byte for byte in its pixels. */
  outputEqualsRealRun: boolean;
}

export interface CoordinatorBench {
  scene: { width: number; height: number; chips: number; factor: number };
  recordSeconds: number;
  runs: CoordinatorRun[];
  speedup: number;
}

async function readBand(file: string): Promise<Buffer> {
  const image = await (await fromFile(file)).getImage();
  const [band] = (await image.readRasters({ interleave: false })) as unknown as Uint8Array[];
  return Buffer.from(band);
}

/** One real run of the scene with 2 real workers; every result seen on the results subject is kept by chip. */
async function record(scene: BenchScene, url: string, nc: NatsConnection, out: string, log: (l: string) => void): Promise<Map<number, TileResult>> {
  const n = names('rec');
  const results = new Map<number, TileResult>();
  const sub = nc.subscribe(n.resultsFilter, {
    callback: (_err, m) => {
      for (const o of outcomesFromWire(m.data, m.headers)) if (o.type === 'tile-result') results.set(o.chipIndex, o);
    },
  });
  const workers = [0, 1].map((i) => spawnCli(['worker', '--nats', url, '--nats-prefix', 'rec', '--threads', '1', '--allow-root', CACHE_DIR, '--worker-id', `rec-${i}`]));
  try {
    await Promise.all(workers.map((w) => w.waitFor(/pulling from/, 120_000)));
    const run = spawnCli(['run', '--nats', url, '--nats-prefix', 'rec', '--s2-raster', scene.dir, '--product-mask', 'scl', '--out', out, '--overwrite', '--quiet']);
    const code = await run.exited;
    if (code !== 0) throw new Error(`recording run failed (${code}): ${run.output().slice(-2000)}`);
  } finally {
    await Promise.all(workers.map((w) => w.stop()));
    sub.unsubscribe();
  }
  if (results.size !== scene.chips) throw new Error(`recorded ${results.size} of ${scene.chips} chips`);
  log(`  recorded ${results.size} chip results`);
  return results;
}

/** Answers every tile job with the recorded results of its chips, renamed to the job's run. */
function replayWorker(nc: NatsConnection, prefix: string, recorded: Map<number, TileResult>): JetStreamWorkerTransport {
  const t = new JetStreamWorkerTransport(nc, { prefix, ackWaitMs: 30_000 });
  void (async () => {
    for await (const d of t.jobs(64)) {
      void (async () => {
        // Together, as a worker publishes a job's results: one bundle.
        await Promise.all(d.job.chips.map((c) => t.publish({ ...recorded.get(c.chipIndex)!, runKey: d.job.runKey, worker: 'replay' })));
        await d.ack();
      })();
    }
  })();
  return t;
}

const ownCpuSeconds = (): number => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};

async function runCoordinators(count: number, scene: BenchScene, scenes: number, nats: NatsServer, nc: NatsConnection, recorded: Map<number, TileResult>, reference: Buffer, log: (l: string) => void): Promise<CoordinatorRun> {
  const url = nats.url;
  const prefix = `cap${count}`;
  const dir = path.join(CACHE_DIR, 'capacity', prefix);
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  const lines: string[] = [];
  for (let i = 1; i <= scenes; i++) {
    const link = path.join(dir, `tile${i}`);
    await symlink(scene.dir, link, 'dir');
    lines.push(`${link} scl`);
  }
  const manifest = path.join(dir, 'manifest.txt');
  await writeFile(manifest, `${lines.join('\n')}\n`);
  const topology = { prefix };
  await ensureTopology(nc, topology);
  await ensureSceneTopology(nc, topology);
  const worker = replayWorker(nc, prefix, recorded);
  const coordinators: CliProc[] = [];
  try {
    for (let i = 0; i < count; i++) coordinators.push(spawnCli(['coordinator', '--nats', url, '--nats-prefix', prefix, '--coordinator-id', `cap-${i}`, '--metrics-port', '0', '--quiet']));
    const urls = await Promise.all(coordinators.map((c) => metricsUrl(c)));
    await Promise.all(coordinators.map((c) => c.waitFor(/serving the scene queue/, 120_000)));
    const cpu0 = coordinators.map((c) => processSeconds(c.child.pid!));
    const own0 = ownCpuSeconds();
    const nats0 = processSeconds(nats.pid()!);
    const submit = spawnCli(['submit', '--nats', url, '--nats-prefix', prefix, '--archive', 'capacity', '--out-dir', path.join(dir, 'out'), '--manifest', manifest]);
    if ((await submit.exited) !== 0) throw new Error(`submit failed: ${submit.output().slice(-2000)}`);
    const queue = new JetStreamSceneQueue(nc, { prefix });
    for (;;) {
      const records = await queue.records('capacity');
      const failed = records.find((r) => r.state === 'failed');
      if (failed) throw new Error(`scene ${failed.name} failed: ${failed.reason}`);
      if (records.length === scenes && records.every((r) => r.state === 'done')) break;
      await new Promise((r) => setTimeout(r, 250));
    }
    const cpu = coordinators.reduce((s, c, i) => s + processSeconds(c.child.pid!) - cpu0[i]!, 0);
    const otherCpuSecondsPerTile = { replay: (ownCpuSeconds() - own0) / scenes, natsServer: (processSeconds(nats.pid()!) - nats0) / scenes };
    const records = await queue.records('capacity');
    const wallSeconds = (Math.max(...records.map((r) => r.finishedAt!)) - Math.min(...records.map((r) => r.startedAt!))) / 1000;
    const stages = { plan: 0, stitch: 0, merge: 0, write: 0 };
    for (const u of urls) {
      const m = await scrape(u);
      for (const s of Object.keys(stages) as (keyof typeof stages)[]) stages[s] += (m.get(`${COORDINATOR_METRICS.stageDuration}_sum{stage="${s}"}`) ?? 0) / scenes;
    }
    const outputEqualsRealRun = (await readBand(path.join(dir, 'out', 'tile1.tif'))).equals(reference);
    const run: CoordinatorRun = { coordinators: count, scenes, wallSeconds, tilesPerMinute: (60 * scenes) / wallSeconds, cpuSecondsPerTile: cpu / scenes, otherCpuSecondsPerTile, stageSecondsPerTile: stages, outputEqualsRealRun };
    log(`  ${count} coordinator(s): ${scenes} tiles in ${wallSeconds.toFixed(1)} s = ${run.tilesPerMinute.toFixed(1)} tiles/min; ${run.cpuSecondsPerTile.toFixed(2)} CPU-s per tile (bench process ${otherCpuSecondsPerTile.replay.toFixed(2)}, nats-server ${otherCpuSecondsPerTile.natsServer.toFixed(2)}); output equals the real run: ${outputEqualsRealRun}`);
    return run;
  } finally {
    await Promise.all(coordinators.map((c) => c.stop()));
    worker.stop();
  }
}

export async function benchCoordinators(scene: BenchScene, scenes: number, log: (l: string) => void): Promise<CoordinatorBench> {
  const nats = await startNatsServer();
  const nc = await connect({ servers: nats.url });
  try {
    await ensureTopology(nc, { prefix: 'rec' });
    const refOut = path.join(CACHE_DIR, 'capacity', 'real-run.tif');
    await mkdir(path.dirname(refOut), { recursive: true });
    log(`coordinator capacity: recording one real run of the ${scene.width}x${scene.height} scene (2 workers)`);
    const t0 = performance.now();
    const recorded = await record(scene, nats.url, nc, refOut, log);
    const recordSeconds = (performance.now() - t0) / 1000;
    const reference = await readBand(refOut);
    const runs: CoordinatorRun[] = [];
    for (const count of [1, 2]) {
      log(`coordinator capacity: ${scenes} tiles, ${count} coordinator(s), replay workers`);
      runs.push(await runCoordinators(count, scene, scenes, nats, nc, recorded, reference, log));
    }
    return { scene: { width: scene.width, height: scene.height, chips: scene.chips, factor: scene.factor }, recordSeconds, runs, speedup: runs[1]!.tilesPerMinute / runs[0]!.tilesPerMinute };
  } finally {
    await nc.drain().catch(() => {});
    await nats.close();
  }
}

export function coordinatorMarkdown(b: CoordinatorBench, machine: string): string {
  const f = (x: number, d = 2): string => x.toFixed(d);
  const rows = b.runs.map(
    (r) => `| ${r.coordinators} | ${r.scenes} | ${f(r.wallSeconds, 1)} | ${f(r.tilesPerMinute, 1)} | ${f(r.cpuSecondsPerTile)} | ${f(r.otherCpuSecondsPerTile.replay)} | ${f(r.otherCpuSecondsPerTile.natsServer)} | ${f(r.stageSecondsPerTile.plan)} | ${f(r.stageSecondsPerTile.stitch)} | ${f(r.stageSecondsPerTile.merge)} | ${f(r.stageSecondsPerTile.write)} | ${r.outputEqualsRealRun ? 'yes' : 'NO'} |`,
  );
  return [
    `## Coordinator capacity (${b.scene.width}x${b.scene.height}, ${b.scene.chips} chips per tile; ${machine})`,
    '',
    'Replay workers answer each tile job with the results recorded from one real run, so only coordinator work is measured. CPU columns per tile: the coordinator processes (all their threads, after start-up), the bench process (the replay worker and the polling), nats-server. Stage columns: wall seconds per tile from the stage metrics (summed over coordinators).',
    '',
    '| coordinators | tiles | wall s | tiles/min | coordinator CPU-s/tile | bench process CPU-s/tile | nats-server CPU-s/tile | plan s | stitch s | merge s | write s | output = real run |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|',
    ...rows,
    '',
    `Two coordinators: ${f(b.speedup)}x one. Recording run: ${f(b.recordSeconds, 1)} s.`,
    '',
  ].join('\n');
}

const BEGIN = '<!-- coordinator-capacity: written by npm run bench -- --coordinator -->';
const END = '<!-- /coordinator-capacity -->';

/** The coordinator-capacity section of a benchmarks document, markers included, or ''. */
export function capacitySection(doc: string): string {
  const a = doc.indexOf(BEGIN);
  const b = doc.indexOf(END);
  return a >= 0 && b > a ? doc.slice(a, b + END.length) : '';
}

/** Puts `md` into docs/benchmarks.md in place of the previous coordinator-capacity section (or at the end). */
export function withCapacitySection(doc: string, md: string): string {
  const section = `${BEGIN}\n${md.trimEnd()}\n${END}`;
  const old = capacitySection(doc);
  return old ? doc.replace(old, section) : `${doc.trimEnd()}\n\n${section}\n`;
}
