/**
 * `npm run bench [-- --quick] [--skip-fpn] [--only-fpn] [--skip-cluster] [--skip-batch] [--skip-remote] [--only-remote] [--docs] [--wait-idle]`
 * `npm run bench -- --decode`: only the DEFLATE decoder comparison (bench/decode.ts)
 * `npm run bench -- --coordinator [--quick] [--scenes N]`: coordinator capacity only (bench/coordinator.ts)
 *
 * Measures the ceiling (decode once + inference in memory), the real CLI end to end (embedded
 * and cluster, and embedded over loopback http with 100 ms per request), the merge alone and
 * peak memory, with the default models and the FPN-class ones;
 * writes bench/results/latest.{json,md} (and quick.* or full.*) and, for full runs, docs/benchmarks.md.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { defaultFpnCacheDir, ensureFpnModels, FPN_FILES } from '../scripts/lib/fpn.ts';
import { DEFAULT_CLOUD_MODEL, DEFAULT_SHADOW_MODEL, pairDomain } from '../shared/manifest.ts';
import { defaultModelsDir, readManifest } from '../worker/models.ts';
import { measureDecode, measureInference, median } from './ceiling.ts';
import { measureMerge } from './merge.ts';
import { fromRuns, machineInfo, ratio, round, stageReport, writeResults, type BenchResults, type ModelResults } from './report.ts';
import { compareDecoders, decodeMarkdown } from './decode.ts';
import { benchCoordinators, coordinatorMarkdown, withCapacitySection } from './coordinator.ts';
import { waitIdle } from './procs.ts';
import { REMOTE_DEFAULT, runRemote } from './remote.ts';
import { runBatch, runCluster, runEmbedded, type CpuAccount, type ModelSet, type RunResult } from './runners.ts';
import { ensureScene, REPO, type BenchScene } from './scene.ts';

interface Plan {
  quick: boolean;
  /** Mirrored tiling of the default-model scene and of the FPN scene. */
  factor: number;
  fpnFactor: number;
  reps: { decode: number; inference: number; embedded: number; cluster: number; cluster1w: number; merge: number };
  fpnReps: number;
  /** Chips of the FPN inference measurement (undefined: all). */
  fpnInferenceChips?: number;
}

const FULL: Plan = { quick: false, factor: 10, fpnFactor: 10, reps: { decode: 3, inference: 3, embedded: 3, cluster: 2, cluster1w: 1, merge: 5 }, fpnReps: 1 };
const QUICK: Plan = { quick: true, factor: 4, fpnFactor: 2, reps: { decode: 2, inference: 2, embedded: 2, cluster: 1, cluster1w: 1, merge: 3 }, fpnReps: 1, fpnInferenceChips: 24 };

const t0 = performance.now();
function log(line: string): void {
  const s = Math.round((performance.now() - t0) / 1000);
  process.stderr.write(`[${String(Math.floor(s / 60)).padStart(2, '0')}:${String(s % 60).padStart(2, '0')}] ${line}\n`);
}

/** Set by --wait-idle: before each timed measurement, wait for other work on the machine to stop. */
let beforeRep = async (): Promise<unknown> => undefined;

async function repeat<T>(label: string, n: number, fn: () => Promise<T>, seconds: (r: T) => number): Promise<T[]> {
  const out: T[] = [];
  for (let i = 0; i < n; i++) {
    await beforeRep();
    const r = await fn();
    out.push(r);
    log(`  ${label} ${i + 1}/${n}: ${seconds(r).toFixed(2)} s`);
  }
  return out;
}

interface Skips {
  cluster: boolean;
}

async function measureModels(models: ModelSet, scene: BenchScene, reps: Plan['reps'], threads: number, skip: Skips, inferenceChips?: number): Promise<ModelResults> {
  const tag = models.label;
  log(`[${tag}] a1: decode every source tile once + resample (${threads} threads)`);
  const dec = await measureDecode(scene, threads, reps.decode, beforeRep);
  dec.seconds.forEach((s, i) => log(`  a1 ${i + 1}/${dec.seconds.length}: ${s.toFixed(2)} s (${dec.tiles} tiles, ${dec.decodedMB.toFixed(0)} MB decoded)`));
  log(`[${tag}] a2: ${inferenceChips ?? scene.chips} chips through both models in memory (${threads} threads)`);
  const inf = await measureInference(scene, models, threads, reps.inference, inferenceChips, beforeRep);
  inf.sceneSeconds.forEach((s, i) => log(`  a2 ${i + 1}/${inf.seconds.length}: ${s.toFixed(2)} s for the scene${inf.chips < scene.chips ? ` (${inf.seconds[i]!.toFixed(2)} s for ${inf.chips} chips)` : ''}`));
  const domain = pairDomain(await readManifest(models.cloud, models.modelsDir), await readManifest(models.shadow, models.modelsDir));
  let once: Awaited<ReturnType<typeof measureInference>> | null = null;
  if (domain.kind === 'window') {
    log(`[${tag}] a2': the chips' write windows only through both models (each output pixel once)`);
    once = await measureInference(scene, models, threads, reps.inference, inferenceChips, beforeRep, 'write');
    once.sceneSeconds.forEach((s, i) => log(`  a2' ${i + 1}/${once!.seconds.length}: ${s.toFixed(2)} s for the scene`));
  } else {
    log(`[${tag}] no a2': ${domain.reason}, so whole chips are the least these models can run on`);
  }
  const decode = median(dec.seconds);
  const inference = median(inf.sceneSeconds);
  const ceiling = decode + inference;
  // Models that must run whole chips: the per-chip ceiling is also the true one.
  const inferenceOnce = once ? median(once.sceneSeconds) : inference;
  const ceilingTrue = decode + inferenceOnce;
  log(`[${tag}] per-chip ceiling ${ceiling.toFixed(2)} s, true ceiling ${ceilingTrue.toFixed(2)} s; b: embedded run`);
  const emb = await repeat(`[${tag}] embedded`, reps.embedded, () => runEmbedded(scene, models, threads), (r) => r.seconds);
  const e = fromRuns(emb);
  log(`[${tag}] embedded ${e.median.toFixed(2)} s, efficiency ${(ceiling / e.median).toFixed(3)} (per-chip ceiling), ${(ceilingTrue / e.median).toFixed(3)} (true ceiling)`);
  let c2: RunResult[] = [];
  let c1: RunResult[] = [];
  if (!skip.cluster) {
    c2 = await repeat(`[${tag}] cluster 2 workers`, reps.cluster, () => runCluster(scene, models, threads, 2), (r) => r.seconds);
    c1 = await repeat(`[${tag}] cluster 1 worker`, reps.cluster1w, () => runCluster(scene, models, threads, 1), (r) => r.seconds);
  }
  for (const r of [...c2, ...c1]) log(`[${tag}] cluster ${r.breakdown.decodes.length} worker(s): tiles decoded ${r.breakdown.decodes.join(' + ')} (embedded: ${emb[0]?.breakdown.decodes.join('') ?? '–'})`);
  const c = c2.length ? fromRuns(c2) : null;
  const c1r = c1.length ? fromRuns(c1) : null;
  return {
    models: { dir: path.relative(process.cwd(), models.modelsDir) || '.', cloud: models.cloud, shadow: models.shadow },
    scene: { dir: path.relative(process.cwd(), scene.dir), factor: scene.factor, width: scene.width, height: scene.height, chips: scene.chips, bytes: scene.bytes },
    threads,
    inference_chips: inf.chips,
    decode_s: round(decode),
    inference_s: round(inference),
    ceiling_s: round(ceiling),
    inference_once_s: once ? round(inferenceOnce) : null,
    ceiling_true_s: round(ceilingTrue),
    true_ceiling_note: once ? null : `${domain.kind === 'per-chip' ? domain.reason : ''}: whole chips only, the true ceiling is the per-chip one`,
    embedded_s: e.median,
    embedded_scene_s: round(median(emb.map((r) => r.sceneSeconds ?? NaN))),
    cluster_s: c?.median ?? null,
    cluster_1w_s: c1r?.median ?? null,
    efficiency_embedded: ratio(ceiling, e.median),
    efficiency_cluster: ratio(ceiling, c?.median ?? null),
    efficiency_cluster_1w: ratio(ceiling, c1r?.median ?? null),
    efficiency_true_embedded: ratio(ceilingTrue, e.median),
    efficiency_true_cluster: ratio(ceilingTrue, c?.median ?? null),
    efficiency_true_cluster_1w: ratio(ceilingTrue, c1r?.median ?? null),
    embedded_peak_rss_mb: e.peakCoordinator,
    coordinator_peak_rss_mb: c ? Math.max(c.peakCoordinator, c1r?.peakCoordinator ?? 0) : null,
    worker_peak_rss_mb: c ? Math.max(c.peakWorker ?? 0, c1r?.peakWorker ?? 0) : null,
    breakdown_embedded: stageReport(e.breakdown),
    breakdown_cluster: c ? stageReport(c.breakdown) : null,
    cpu_embedded: e.cpu,
    cpu_cluster: c?.cpu ?? null,
    cpu_cluster_1w: c1r?.cpu ?? null,
    samples: {
      decode_s: dec.seconds.map((s) => round(s)),
      inference_s: inf.sceneSeconds.map((s) => round(s)),
      inference_once_s: (once?.sceneSeconds ?? []).map((s) => round(s)),
      embedded_s: emb.map((r) => round(r.seconds)),
      cluster_s: c2.map((r) => round(r.seconds)),
      cluster_1w_s: c1.map((r) => round(r.seconds)),
    },
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean' },
      'skip-fpn': { type: 'boolean' },
      'only-fpn': { type: 'boolean' },
      'skip-cluster': { type: 'boolean' },
      'skip-batch': { type: 'boolean' },
      docs: { type: 'boolean' },
      'wait-idle': { type: 'boolean' },
      decode: { type: 'boolean' },
      coordinator: { type: 'boolean' },
      scenes: { type: 'string' },
      'skip-remote': { type: 'boolean' },
      'only-remote': { type: 'boolean' },
    },
  });
  buildCli();
  if (values.decode) return decodeOnly();
  if (values.coordinator) return coordinatorOnly(values.quick ? QUICK : FULL, Number(values.scenes ?? 8));
  if (values['wait-idle']) beforeRep = () => waitIdle(log);
  const plan = values.quick ? QUICK : FULL;
  const threads = os.availableParallelism();
  // Taken now: its load average is the one at the start of the run.
  const machine = machineInfo();
  const skip: Skips = { cluster: Boolean(values['skip-cluster']) };
  log(`bench (${plan.quick ? 'quick' : 'full'}): ${threads} cores, ${os.cpus()[0]?.model.trim()}, node ${process.version}`);
  const scene = await ensureScene(plan.factor, log);
  log(`scene ${path.relative(process.cwd(), scene.dir)}: ${scene.width}x${scene.height} (${plan.factor}x${plan.factor} mirrored), ${scene.chips} chips, ${(scene.bytes / 1e6).toFixed(0)} MB`);
  const defaults: ModelSet = { label: 'default', modelsDir: defaultModelsDir(), cloud: DEFAULT_CLOUD_MODEL, shadow: DEFAULT_SHADOW_MODEL, builtin: true };
  if (values['only-remote']) {
    const local = await repeat('[default] embedded, local files', plan.reps.embedded, () => runEmbedded(scene, defaults, threads), (r) => r.seconds);
    const remote = await measureRemote(scene, defaults, threads, plan.reps.embedded);
    log(`remote ${remote.seconds} s against local ${fromRuns(local).median} s: ratio ${ratio(fromRuns(local).median, remote.seconds)} (local/remote); nothing written`);
    return;
  }

  log('d: merge of a full-size mask alone');
  await beforeRep();
  const merge = await measureMerge(plan.reps.merge);
  log(`  merge ${merge.width}x${merge.height}: median ${median(merge.seconds).toFixed(3)} s (${merge.seconds.map((s) => s.toFixed(3)).join(', ')})`);

  const def = values['only-fpn'] ? null : await measureModels(defaults, scene, plan.reps, threads, skip);
  const remote = values['skip-remote'] || values['only-fpn'] ? null : await measureRemote(scene, defaults, threads, plan.reps.embedded);
  let batch: Awaited<ReturnType<typeof runBatch>> | null = null;
  if (!values['skip-batch'] && !values['only-fpn']) {
    log('e: batch of 3 scenes through one coordinator (cluster, 2 workers)');
    await beforeRep();
    batch = await runBatch(scene, defaults, threads, 3, 2);
    log(`  batch ${batch.seconds.toFixed(1)} s; coordinator peak ${batch.coordinatorPeakRssMb.toFixed(0)} MB (after each scene ${batch.coordinatorPeakAfterScene.map((x) => x.toFixed(0)).join(', ')}), workers ${batch.workerPeakRssMb.map((x) => x.toFixed(0)).join(', ')} MB`);
  }

  let fpn: ModelResults | null = null;
  if (!values['skip-fpn']) {
    log('FPN-class models: generating them if needed (.cache/models)');
    const dir = defaultFpnCacheDir();
    await ensureFpnModels(dir);
    const fpnModels: ModelSet = { label: 'fpn', modelsDir: dir, cloud: FPN_FILES.cloud, shadow: FPN_FILES.shadow, builtin: false };
    const fpnScene = plan.fpnFactor === plan.factor ? scene : await ensureScene(plan.fpnFactor, log);
    const r = plan.fpnReps;
    fpn = await measureModels(fpnModels, fpnScene, { decode: Math.min(2, plan.reps.decode), inference: r, embedded: r, cluster: r, cluster1w: r, merge: 0 }, threads, skip, plan.fpnInferenceChips);
  }

  const results: BenchResults = {
    generated: new Date().toISOString(),
    mode: plan.quick ? 'quick' : 'full',
    note: plan.quick
      ? 'QUICK mode: 4x4 mirrored scene (4392x4392, 144 chips) for the default models, 2x2 (2196x2196, 36 chips) for the FPN ones, fewer repetitions.'
      : 'Full-size 10980x10980 scene (841 chips).',
    machine,
    ...(def ?? {}),
    merge_s: round(median(merge.seconds)),
    merge_samples: merge.seconds.map((s) => round(s)),
    batch_scenes: batch?.scenes ?? null,
    batch_s: batch ? round(batch.seconds) : null,
    batch_coordinator_peak_rss_mb: batch ? Math.round(batch.coordinatorPeakRssMb) : null,
    batch_coordinator_peak_after_scene_mb: batch ? batch.coordinatorPeakAfterScene.map(Math.round) : null,
    batch_worker_peak_rss_mb: batch ? Math.round(Math.max(...batch.workerPeakRssMb)) : null,
    remote_setup: remote ? { latency_ms: REMOTE_DEFAULT.latencyMs, bytes_per_second: REMOTE_DEFAULT.bytesPerSecond } : null,
    remote_s: remote?.seconds ?? null,
    remote_ratio: remote && def ? ratio(def.embedded_s, remote.seconds) : null,
    remote_requests: remote?.requests ?? null,
    remote_cpu: remote?.cpu ?? null,
    fpn,
    bench_seconds: round((performance.now() - t0) / 1000, 1),
  };
  results.machine.loadavg_at_end = os.loadavg().map((x) => Math.round(x * 100) / 100);
  const files = await writeResults(results, !plan.quick || Boolean(values.docs));
  printSummary(results);
  log(`wrote ${files.map((f) => path.relative(process.cwd(), f)).join(', ')}`);
}

/** --decode: the decoders on the sample tile's files; writes bench/results/decode.{json,md}. */
async function decodeOnly(): Promise<void> {
  log('decode: DEFLATE decoders on the band COGs of s2-l2a-29RKH (one thread)');
  const c = await compareDecoders(5, undefined, log);
  const dir = path.join(REPO, 'bench', 'results');
  await writeFile(path.join(dir, 'decode.json'), `${JSON.stringify({ generated: new Date().toISOString(), machine: machineInfo(), ...c }, null, 2)}\n`);
  await writeFile(path.join(dir, 'decode.md'), decodeMarkdown(c));
  process.stdout.write(decodeMarkdown(c));
  log('wrote bench/results/decode.json, bench/results/decode.md');
}

async function coordinatorOnly(plan: Plan, scenes: number): Promise<void> {
  const machine = machineInfo();
  const scene = await ensureScene(plan.factor, log);
  const result = await benchCoordinators(scene, scenes, log);
  machine.loadavg_at_end = os.loadavg().map((x) => Math.round(x * 100) / 100);
  const dir = path.join(REPO, 'bench', 'results');
  const md = coordinatorMarkdown(result, `${machine.cores} cores, ${machine.cpu}, load average ${machine.loadavg_at_start[0]} at the start, ${machine.loadavg_at_end[0]} at the end`);
  await writeFile(path.join(dir, 'coordinator.json'), `${JSON.stringify({ generated: new Date().toISOString(), mode: plan.quick ? 'quick' : 'full', machine, ...result }, null, 2)}\n`);
  await writeFile(path.join(dir, 'coordinator.md'), md);
  process.stdout.write(md);
  // Full-size runs go into docs/benchmarks.md (their own section; the main bench keeps it).
  if (!plan.quick) {
    const doc = path.join(REPO, 'docs', 'benchmarks.md');
    await writeFile(doc, withCapacitySection(await readFile(doc, 'utf8'), md));
  }
  log(`wrote bench/results/coordinator.json, bench/results/coordinator.md${plan.quick ? '' : ', docs/benchmarks.md'}`);
}

/**
 * Compiles dist/ first, so the CLI the bench spawns runs compiled, as the Docker image does (from
 * stale or no dist/ it would run the sources through tsx, which transpiles every module at start
 * in the process and in each chip thread: measured 2026-12-02, 14.4-14.8 s against 16.0-16.3 s for
 * the embedded full tile). The ceilings are steady-state figures taken in this process; tsx's
 * output is plain JavaScript like tsc's, so their hot loops do not differ.
 */
function buildCli(): void {
  log('building dist/ (npm run build): the CLI runs compiled, as in the Docker image');
  const r = spawnSync(process.execPath, [path.join(REPO, 'scripts', 'build.mjs')], { cwd: REPO, stdio: ['ignore', 'inherit', 'inherit'] });
  if (r.status !== 0) throw new Error(`npm run build failed (exit ${r.status}): the bench measures the compiled CLI`);
}

/** The embedded run over loopback http (bench/remote.ts), median of `reps`. */
async function measureRemote(scene: BenchScene, models: ModelSet, threads: number, reps: number): Promise<{ seconds: number; requests: number; cpu: CpuAccount }> {
  log(`f: embedded run reading over loopback http (${REMOTE_DEFAULT.latencyMs} ms a request, ${REMOTE_DEFAULT.bytesPerSecond / 1e6} MB/s a response)`);
  const runs = await repeat('[default] embedded, remote', reps, () => runRemote(scene, models, threads), (r) => r.seconds);
  const r = fromRuns(runs);
  return { seconds: r.median, requests: Math.round(median(runs.map((x) => x.requests))), cpu: r.cpu };
}

function printSummary(r: BenchResults): void {
  const line = (m: Partial<ModelResults> | null, tag: string): void => {
    if (!m || m.ceiling_s === undefined) return;
    log(`${tag}: per-chip ceiling ${m.ceiling_s} s (decode ${m.decode_s} + inference ${m.inference_s}), true ceiling ${m.ceiling_true_s} s (inference of each pixel once ${m.inference_once_s ?? '–'}); embedded ${m.embedded_s} s (eff ${m.efficiency_embedded} / true ${m.efficiency_true_embedded}); cluster 2w ${m.cluster_s ?? '–'} s (eff ${m.efficiency_cluster ?? '–'} / true ${m.efficiency_true_cluster ?? '–'}), 1w ${m.cluster_1w_s ?? '–'} s; RSS embedded ${m.embedded_peak_rss_mb} MB, coordinator ${m.coordinator_peak_rss_mb ?? '–'} MB, worker ${m.worker_peak_rss_mb ?? '–'} MB`);
  };
  line(r, 'default');
  line(r.fpn, 'fpn');
  log(`merge ${r.merge_s} s; batch coordinator peak ${r.batch_coordinator_peak_rss_mb ?? '–'} MB; total ${r.bench_seconds} s`);
}

/**
 * The image's allocator settings (deploy/Dockerfile's `ENV GLIBC_TUNABLES`), which glibc reads
 * only at process start: the bench re-runs itself under them once, so the ceilings and the CLI
 * runs it spawns are measured in the environment the image gives them.
 */
function imageTunables(): string | null {
  const dockerfile = readFileSync(path.join(REPO, 'deploy', 'Dockerfile'), 'utf8');
  return /^ENV\s+GLIBC_TUNABLES=(\S+)\s*$/m.exec(dockerfile)?.[1] ?? null;
}

const tunables = imageTunables();
if (tunables && process.env.GLIBC_TUNABLES !== tunables) {
  const r = spawnSync(process.execPath, [...process.execArgv, ...process.argv.slice(1)], { stdio: 'inherit', env: { ...process.env, GLIBC_TUNABLES: tunables } });
  process.exit(r.status ?? 1);
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exitCode = 1;
});
