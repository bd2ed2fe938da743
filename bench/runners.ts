/**
 * End-to-end runs of the real CLI: embedded `run`, cluster `run --nats` with 1..n `worker`
 * processes on a fresh local nats-server, and a cluster `batch`. Each returns its wall time,
 * the processes' peak RSS and the per-stage breakdown scraped from their /metrics.
 */
import { mkdir, rm, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { COORDINATOR_METRICS, WORKER_METRICS } from '../shared/metric-names.ts';
import { startNatsServer } from '../test/helpers/nats-server.ts';
import { metricsUrl, processSeconds, scrape, spawnCli, type CliProc, type ThreadCpu } from './procs.ts';
import { CACHE_DIR, type BenchScene } from './scene.ts';

/** A pair of models and where they live; `builtin` ones are selected by passing no flag at all. */
export interface ModelSet {
  label: 'default' | 'fpn';
  modelsDir: string;
  cloud: string;
  shadow: string;
  builtin: boolean;
}

/** Flags of `run`, `batch` and `worker` selecting the models (a worker preflights the ones it is given). */
function modelFlags(m: ModelSet): string[] {
  return m.builtin ? [] : ['--models-dir', m.modelsDir, '--cloud-model', m.cloud, '--shadow-model', m.shadow];
}

/** Seconds spent per stage, summed over chips (worker stages are thread-seconds). */
export interface Breakdown {
  chips: number;
  /** `inference`: both models (one run per chip when merged, see worker/onnx-pair.ts). */
  worker: { read: number; inference: number; threshold: number; publish: number };
  coordinator: { plan: number; stitch: number; merge: number; write: number };
  /** Source tiles decoded, per worker process (embedded: one). */
  decodes: number[];
}

/**
 * CPU seconds (user + system) each process used from the coordinator's spawn to its outputs
 * written: where a run's time goes when the cores are shared (docs/benchmarks.md).
 */
export interface CpuAccount {
  /** The coordinator; in an embedded run the one process, chip threads and all. */
  coordinator: ThreadCpu;
  workers: ThreadCpu[];
  natsServer: number | null;
  /** This bench process: the remote run's test http server, otherwise it waits. */
  bench: number;
}

export interface RunResult {
  /** Spawn of the coordinator to its "work done" line, seconds. */
  seconds: number;
  /** The coordinator's own report (scene planned to outputs written), seconds. */
  sceneSeconds: number | null;
  coordinatorPeakRssMb: number;
  workerPeakRssMb: number[];
  breakdown: Breakdown;
  cpu: CpuAccount;
}

/** CPU seconds of the processes other than the coordinator, at the coordinator's spawn. */
interface CpuMark {
  workers: ThreadCpu[];
  natsServer: number | null;
  bench: number;
}

const zero: ThreadCpu = { main: 0, others: 0 };
const ownSeconds = (): number => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};

function markCpu(workers: CliProc[], natsPid?: number): CpuMark {
  return { workers: workers.map((w) => w.cpu() ?? zero), natsServer: natsPid ? processSeconds(natsPid) : null, bench: ownSeconds() };
}

/** The account from `mark` to now; the coordinator started at the mark. */
function cpuSince(mark: CpuMark, coordinator: CliProc, workers: CliProc[], natsPid?: number): CpuAccount {
  const diff = (a: ThreadCpu | null, b: ThreadCpu): ThreadCpu => ({ main: (a?.main ?? NaN) - b.main, others: (a?.others ?? NaN) - b.others });
  return {
    coordinator: diff(coordinator.cpu(), zero),
    workers: workers.map((w, i) => diff(w.cpu(), mark.workers[i]!)),
    natsServer: natsPid && mark.natsServer !== null ? processSeconds(natsPid) - mark.natsServer : null,
    bench: ownSeconds() - mark.bench,
  };
}

const WORK_DONE = /work done; still serving/;
const OUT_DIR = path.join(CACHE_DIR, 'out');

function emptyBreakdown(): Breakdown {
  return { chips: 0, worker: { read: 0, inference: 0, threshold: 0, publish: 0 }, coordinator: { plan: 0, stitch: 0, merge: 0, write: 0 }, decodes: [] };
}

function addWorkerMetrics(b: Breakdown, m: Map<string, number>): void {
  const s = (stage: string): number => m.get(`${WORKER_METRICS.chipStageDuration}_sum{stage="${stage}"}`) ?? 0;
  b.chips += m.get(WORKER_METRICS.chipsProcessed) ?? 0;
  b.worker.read += s('read');
  b.worker.inference += s('inference');
  b.worker.threshold += s('threshold');
  b.worker.publish += s('publish');
  b.decodes.push(m.get(WORKER_METRICS.tileDecodes) ?? 0);
}

function addCoordinatorMetrics(b: Breakdown, m: Map<string, number>): void {
  const s = (stage: string): number => m.get(`${COORDINATOR_METRICS.stageDuration}_sum{stage="${stage}"}`) ?? 0;
  b.coordinator.plan += s('plan');
  b.coordinator.stitch += s('stitch');
  b.coordinator.merge += s('merge');
  b.coordinator.write += s('write');
}

function sceneArgs(scene: BenchScene, out: string, models: ModelSet): string[] {
  return ['--s2-raster', scene.dir, '--product-mask', 'scl', '--out', out, '--overwrite', '--quiet', '--json', '--metrics-port', '0', '--keep-serving', ...modelFlags(models)];
}

/** The JSON report `run --json` prints on stdout (after SIGTERM ends --keep-serving). */
function reportSeconds(output: string): number | null {
  const m = /"seconds":\s*([\d.]+)/.exec(output);
  return m ? Number(m[1]) : null;
}

async function finish(coordinator: CliProc, workers: CliProc[], seconds: number, breakdown: Breakdown, cpu: CpuAccount): Promise<RunResult> {
  const coordinatorPeakRssMb = coordinator.peakRssMb() ?? NaN;
  const workerPeakRssMb = workers.map((w) => w.peakRssMb() ?? NaN);
  await Promise.all([coordinator, ...workers].map((p) => p.stop()));
  return { seconds, sceneSeconds: reportSeconds(coordinator.output()), coordinatorPeakRssMb, workerPeakRssMb, breakdown, cpu };
}

/** `run` embedded: coordinator and chip threads in one process. */
export async function runEmbedded(scene: BenchScene, models: ModelSet, threads: number): Promise<RunResult> {
  await mkdir(OUT_DIR, { recursive: true });
  const mark = markCpu([]);
  const p = spawnCli(['run', ...sceneArgs(scene, path.join(OUT_DIR, `embedded-${models.label}.tif`), models), '--threads', String(threads)]);
  try {
    const url = await metricsUrl(p);
    await p.waitFor(WORK_DONE);
    const seconds = (performance.now() - p.started) / 1000;
    const cpu = cpuSince(mark, p, []);
    const b = emptyBreakdown();
    const m = await scrape(url);
    addWorkerMetrics(b, m);
    addCoordinatorMetrics(b, m);
    // In embedded mode the one process is both: its peak counts as the coordinator's.
    return await finish(p, [], seconds, b, cpu);
  } finally {
    await p.stop();
  }
}

interface Cluster {
  url: string;
  natsPid(): number | undefined;
  workers: CliProc[];
  workerUrls: string[];
  close(): Promise<void>;
}

/** A fresh nats-server (fresh store: nothing to resume) and `count` workers sharing `threads`. */
async function startCluster(count: number, threads: number, models: ModelSet): Promise<Cluster> {
  const nats = await startNatsServer();
  const perWorker = Math.max(1, Math.floor(threads / count));
  const workers: CliProc[] = [];
  try {
    for (let i = 0; i < count; i++) {
      workers.push(spawnCli(['worker', '--nats', nats.url, '--threads', String(perWorker), '--allow-root', CACHE_DIR, '--worker-id', `bench-${i}`, '--metrics-port', '0', ...modelFlags(models)]));
    }
    const workerUrls = await Promise.all(workers.map((w) => metricsUrl(w)));
    await Promise.all(workers.map((w) => w.waitFor(/pulling from/, 120_000)));
    return {
      url: nats.url,
      natsPid: () => nats.pid(),
      workers,
      workerUrls,
      close: async () => {
        await Promise.all(workers.map((w) => w.stop()));
        await nats.close();
      },
    };
  } catch (err) {
    await Promise.all(workers.map((w) => w.stop()));
    await nats.close();
    throw err;
  }
}

async function clusterBreakdown(coordinatorUrl: string, c: Cluster): Promise<Breakdown> {
  const b = emptyBreakdown();
  addCoordinatorMetrics(b, await scrape(coordinatorUrl));
  for (const u of c.workerUrls) addWorkerMetrics(b, await scrape(u));
  return b;
}

/** `run --nats` with `workerCount` worker processes splitting `threads` threads. */
export async function runCluster(scene: BenchScene, models: ModelSet, threads: number, workerCount: number): Promise<RunResult> {
  await mkdir(OUT_DIR, { recursive: true });
  const c = await startCluster(workerCount, threads, models);
  try {
    const mark = markCpu(c.workers, c.natsPid());
    const p = spawnCli(['run', '--nats', c.url, ...sceneArgs(scene, path.join(OUT_DIR, `cluster-${models.label}.tif`), models)]);
    try {
      const url = await metricsUrl(p);
      await p.waitFor(WORK_DONE);
      const seconds = (performance.now() - p.started) / 1000;
      const cpu = cpuSince(mark, p, c.workers, c.natsPid());
      return await finish(p, c.workers, seconds, await clusterBreakdown(url, c), cpu);
    } finally {
      await p.stop();
    }
  } finally {
    await c.close();
  }
}

export interface BatchResult {
  scenes: number;
  seconds: number;
  coordinatorPeakRssMb: number;
  /** Coordinator peak RSS after each finished scene: flat means memory does not grow. */
  coordinatorPeakAfterScene: number[];
  workerPeakRssMb: number[];
  /** Source tiles each worker decoded. */
  decodes: number[];
}

/** `batch --nats` over `count` copies of the scene (symlinked folders: distinct runs, same data). */
export async function runBatch(scene: BenchScene, models: ModelSet, threads: number, count: number, workerCount: number, extraArgs: string[] = []): Promise<BatchResult> {
  const dir = path.join(CACHE_DIR, 'batch');
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  const inputs: string[] = [];
  for (let i = 1; i <= count; i++) {
    const link = path.join(dir, `scene${i}`);
    await symlink(scene.dir, link, 'dir');
    inputs.push(link);
  }
  const manifest = path.join(dir, 'manifest.txt');
  await writeFile(manifest, `${inputs.map((i) => `${i} scl`).join('\n')}\n`);
  const c = await startCluster(workerCount, threads, models);
  try {
    const p = spawnCli(['batch', '--nats', c.url, '--manifest', manifest, '--out-dir', path.join(dir, 'out'), '--quiet', '--metrics-port', '0', '--keep-serving', ...modelFlags(models), ...extraArgs]);
    try {
      const after: number[] = [];
      for (let k = 1; k <= count; k++) {
        // Two scenes finishing together can skip a count: any count >= k will do.
        const atLeast = Array.from({ length: count - k + 1 }, (_, j) => k + j).join('|');
        await p.waitFor(new RegExp(`archive \\S+: (${atLeast})/${count} scenes finished`));
        after.push(p.peakRssMb() ?? NaN);
      }
      await p.waitFor(WORK_DONE);
      const seconds = (performance.now() - p.started) / 1000;
      const coordinatorPeakRssMb = p.peakRssMb() ?? NaN;
      const decodes = await Promise.all(c.workerUrls.map(async (u) => (await scrape(u)).get(WORKER_METRICS.tileDecodes) ?? 0));
      return { scenes: count, seconds, coordinatorPeakRssMb, coordinatorPeakAfterScene: after, workerPeakRssMb: c.workers.map((w) => w.peakRssMb() ?? NaN), decodes };
    } finally {
      await p.stop();
    }
  } finally {
    await c.close();
  }
}
