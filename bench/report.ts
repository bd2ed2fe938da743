/**
 * Results: bench/results/latest.json (and <mode>.json) for machines, docs/benchmarks.md for
 * people (a full run writes it; a quick run only when asked).
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { capacitySection } from './coordinator.ts';
import os from 'node:os';
import path from 'node:path';
import type { Breakdown, CpuAccount, RunResult } from './runners.ts';
import { REPO } from './scene.ts';

export interface Machine {
  cpu: string;
  cores: number;
  memory_gb: number;
  node: string;
  os: string;
  loadavg_at_start: number[];
  /** Filled in at the end: other work on a shared machine shows here. */
  loadavg_at_end?: number[];
}

export function machineInfo(): Machine {
  return {
    cpu: os.cpus()[0]?.model.trim() ?? 'unknown',
    cores: os.availableParallelism(),
    memory_gb: Math.round(os.totalmem() / 2 ** 30),
    node: process.version,
    os: `${os.type()} ${os.release()}`,
    loadavg_at_start: os.loadavg().map((x) => Math.round(x * 100) / 100),
  };
}

/** Per-stage seconds as the JSON carries them: worker stages in thread-seconds, per chip in ms. */
export interface StageReport {
  chips: number;
  worker_thread_s: Breakdown['worker'];
  worker_ms_per_chip: Breakdown['worker'];
  coordinator_s: Breakdown['coordinator'];
}

export function stageReport(b: Breakdown): StageReport {
  const perChip = Object.fromEntries(Object.entries(b.worker).map(([k, v]) => [k, round((1000 * v) / Math.max(1, b.chips), 2)])) as Breakdown['worker'];
  const thread = Object.fromEntries(Object.entries(b.worker).map(([k, v]) => [k, round(v, 3)])) as Breakdown['worker'];
  const coord = Object.fromEntries(Object.entries(b.coordinator).map(([k, v]) => [k, round(v, 3)])) as Breakdown['coordinator'];
  return { chips: b.chips, worker_thread_s: thread, worker_ms_per_chip: perChip, coordinator_s: coord };
}

export const round = (x: number, digits = 3): number => (Number.isFinite(x) ? Math.round(x * 10 ** digits) / 10 ** digits : x);

/** The figures of one model set. Fields are null when that part was skipped. */
export interface ModelResults {
  models: { dir: string; cloud: string; shadow: string };
  scene: { dir: string; factor: number; width: number; height: number; chips: number; bytes: number };
  threads: number;
  /** Chips actually pushed through the models for inference_s (scaled to the scene when fewer). */
  inference_chips: number;
  decode_s: number | null;
  inference_s: number | null;
  /** Per-chip ceiling: a1 + a2 (whole 512x512 chips, as FarmVibes infers them). */
  ceiling_s: number | null;
  /** a2': only each chip's write window through the models (each output pixel once); null when the models need whole chips. */
  inference_once_s: number | null;
  /** True ceiling: a1 + a2' (a1 + a2 for models that need whole chips). */
  ceiling_true_s: number | null;
  /** Why the true ceiling is the per-chip one, when it is. */
  true_ceiling_note: string | null;
  embedded_s: number | null;
  embedded_scene_s: number | null;
  cluster_s: number | null;
  cluster_1w_s: number | null;
  efficiency_embedded: number | null;
  efficiency_cluster: number | null;
  efficiency_cluster_1w: number | null;
  /** The same against the true ceiling. */
  efficiency_true_embedded: number | null;
  efficiency_true_cluster: number | null;
  efficiency_true_cluster_1w: number | null;
  embedded_peak_rss_mb: number | null;
  coordinator_peak_rss_mb: number | null;
  worker_peak_rss_mb: number | null;
  breakdown_embedded: StageReport | null;
  breakdown_cluster: StageReport | null;
  /** CPU seconds of each process over the median run's timed window. */
  cpu_embedded: CpuAccount | null;
  cpu_cluster: CpuAccount | null;
  cpu_cluster_1w: CpuAccount | null;
  samples: Record<string, number[]>;
}

export interface BenchResults extends Partial<ModelResults> {
  generated: string;
  mode: 'full' | 'quick';
  note: string;
  machine: Machine;
  merge_s: number | null;
  merge_samples: number[];
  batch_scenes: number | null;
  batch_s: number | null;
  batch_coordinator_peak_rss_mb: number | null;
  batch_coordinator_peak_after_scene_mb: number[] | null;
  batch_worker_peak_rss_mb: number | null;
  /** f: embedded run over loopback http (bench/remote.ts). */
  remote_setup?: { latency_ms: number; bytes_per_second: number } | null;
  remote_s?: number | null;
  /** Local embedded seconds / remote seconds (1 = the waiting is fully hidden). */
  remote_ratio?: number | null;
  remote_requests?: number | null;
  remote_cpu?: CpuAccount | null;
  fpn: ModelResults | null;
  bench_seconds: number;
}

const roundCpu = (c: CpuAccount): CpuAccount => {
  const t = (x: { main: number; others: number }) => ({ main: round(x.main, 2), others: round(x.others, 2) });
  return { coordinator: t(c.coordinator), workers: c.workers.map(t), natsServer: c.natsServer === null ? null : round(c.natsServer, 2), bench: round(c.bench, 2) };
};

export const ratio = (a: number | null, b: number | null): number | null => (a !== null && b !== null && b > 0 ? round(a / b, 3) : null);
export const peak = (xs: number[]): number => Math.max(...xs.filter(Number.isFinite));

export function fromRuns(runs: RunResult[]): { median: number; peakCoordinator: number; peakWorker: number | null; breakdown: Breakdown; cpu: CpuAccount } {
  const sorted = [...runs].sort((a, b) => a.seconds - b.seconds);
  const mid = sorted[(sorted.length - 1) >> 1]!;
  const workers = runs.flatMap((r) => r.workerPeakRssMb);
  return {
    median: round(medianOf(runs.map((r) => r.seconds))),
    peakCoordinator: Math.round(peak(runs.map((r) => r.coordinatorPeakRssMb))),
    peakWorker: workers.length ? Math.round(peak(workers)) : null,
    breakdown: mid.breakdown,
    cpu: roundCpu(mid.cpu),
  };
}

function medianOf(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export async function writeResults(r: BenchResults, docs: boolean): Promise<string[]> {
  const dir = path.join(REPO, 'bench', 'results');
  await mkdir(dir, { recursive: true });
  const json = `${JSON.stringify(r, null, 2)}\n`;
  const table = markdown(r);
  const files: string[] = [];
  for (const name of ['latest', r.mode]) {
    await writeFile(path.join(dir, `${name}.json`), json);
    await writeFile(path.join(dir, `${name}.md`), table);
    files.push(path.join(dir, `${name}.json`), path.join(dir, `${name}.md`));
  }
  // docs/benchmarks.md holds the full run's figures: a quick run does not overwrite them unless asked.
  if (docs) {
    const md = path.join(REPO, 'docs', 'benchmarks.md');
    // The coordinator-capacity section comes from its own run (bench/coordinator.ts): keep it.
    const kept = capacitySection(await readFile(md, 'utf8').catch(() => ''));
    await writeFile(md, kept ? `${table.trimEnd()}\n\n${kept}\n` : table);
    files.push(md);
  }
  return files;
}

const fmt = (x: number | null | undefined, unit = '', digits = 1): string => (x === null || x === undefined || !Number.isFinite(x) ? '–' : `${x.toFixed(digits)}${unit}`);

function figures(m: ModelResults): string[] {
  const scaled = m.inference_chips < m.scene.chips ? ` (${m.inference_chips} chips run, scaled)` : '';
  return [
    '| figure | value |',
    '|---|---|',
    `| scene | ${m.scene.width}x${m.scene.height} (${m.scene.factor}x${m.scene.factor} mirrored), ${m.scene.chips} chips, ${fmt(m.scene.bytes / 1e6, ' MB', 0)} of band files |`,
    `| models | ${m.models.cloud} + ${m.models.shadow} |`,
    `| a1: decode every source tile once + resample to 10 m (${m.threads} threads) | ${fmt(m.decode_s, ' s', 2)} |`,
    `| a2: all chips through both models, whole 512x512 chips, in memory (${m.threads} threads)${scaled} | ${fmt(m.inference_s, ' s', 2)} |`,
    `| a2': each chip's write window only through both models (each output pixel once)${scaled} | ${m.inference_once_s === null ? `– (${m.true_ceiling_note ?? 'not measured'})` : fmt(m.inference_once_s, ' s', 2)} |`,
    `| per-chip ceiling = a1 + a2 | ${fmt(m.ceiling_s, ' s', 2)} |`,
    `| true ceiling = a1 + a2' | ${fmt(m.ceiling_true_s, ' s', 2)} |`,
    `| b: embedded \`run\`, end to end (process start to outputs written) | ${fmt(m.embedded_s, ' s', 2)} (scene ${fmt(m.embedded_scene_s, ' s', 2)}) |`,
    `| c: cluster, 2 workers x ${Math.max(1, m.threads >> 1)} thread | ${fmt(m.cluster_s, ' s', 2)} |`,
    `| c: cluster, 1 worker x ${m.threads} threads | ${fmt(m.cluster_1w_s, ' s', 2)} |`,
    `| efficiency embedded (per-chip ceiling / b; true ceiling / b) | ${fmt(m.efficiency_embedded, '', 3)}; ${fmt(m.efficiency_true_embedded, '', 3)} |`,
    `| efficiency cluster, 2 workers (per-chip; true) | ${fmt(m.efficiency_cluster, '', 3)}; ${fmt(m.efficiency_true_cluster, '', 3)} |`,
    `| efficiency cluster, 1 worker (per-chip; true) | ${fmt(m.efficiency_cluster_1w, '', 3)}; ${fmt(m.efficiency_true_cluster_1w, '', 3)} |`,
    `| peak RSS: embedded process | ${fmt(m.embedded_peak_rss_mb, ' MB', 0)} |`,
    `| peak RSS: cluster coordinator | ${fmt(m.coordinator_peak_rss_mb, ' MB', 0)} |`,
    `| peak RSS: cluster worker (largest) | ${fmt(m.worker_peak_rss_mb, ' MB', 0)} |`,
  ];
}

function breakdownTable(b: StageReport | null, wall: number | null, threads: number): string[] {
  if (!b) return ['(not measured)'];
  const w = b.worker_thread_s;
  const total = w.read + w.inference + w.threshold + w.publish;
  const avail = wall !== null ? wall * threads : null;
  const share = (x: number): string => (avail ? `${((100 * x) / avail).toFixed(1)} %` : '–');
  const rows = [
    '| stage | total | per chip | share of thread time |',
    '|---|---|---|---|',
    ...(['read', 'inference', 'threshold', 'publish'] as const).map((k) => `| worker ${k} | ${fmt(w[k], ' s', 2)} | ${fmt(b.worker_ms_per_chip[k], ' ms', 1)} | ${share(w[k])} |`),
    `| worker, all stages | ${fmt(total, ' s', 2)} | ${fmt((1000 * total) / Math.max(1, b.chips), ' ms', 1)} | ${share(total)} |`,
    ...(['plan', 'stitch', 'merge', 'write'] as const).map((k) => `| coordinator ${k} | ${fmt(b.coordinator_s[k], ' s', 2)} | | |`),
  ];
  return rows;
}

function dominates(m: ModelResults): string {
  const b = m.breakdown_embedded;
  if (!b) return '';
  const w = b.worker_thread_s;
  const parts: [string, number][] = [['model inference (cloud + shadow)', w.inference], ['reading windows (decode + resample + copy)', w.read], ['threshold + pack', w.threshold], ['coordinator (plan + merge + write)', b.coordinator_s.plan + b.coordinator_s.merge + b.coordinator_s.write]];
  parts.sort((a, b2) => b2[1] - a[1]);
  const total = parts.reduce((a, p) => a + p[1], 0);
  return parts.map(([k, v]) => `${k} ${((100 * v) / total).toFixed(0)} %`).join(', ');
}

/**
 * The gap between the embedded run and the ceiling, in thread-seconds: extra work (chip threads
 * busy beyond a1 + a2) and idle threads (startup, planning, merge and write, the last jobs).
 */
/** "1.2 more than" / "0.4 less than". */
const more = (x: number): string => `${Math.abs(x).toFixed(1)} ${x >= 0 ? 'more' : 'less'} than`;

function gap(m: ModelResults): string {
  const b = m.breakdown_embedded;
  if (!b || m.embedded_s === null || m.ceiling_s === null || m.decode_s === null || m.inference_s === null) return '';
  const w = b.worker_thread_s;
  const busy = w.read + w.inference + w.threshold + w.publish;
  const t = m.threads;
  const idle = t * m.embedded_s - busy;
  const extraRead = w.read + w.threshold - t * m.decode_s;
  // Against what the pipeline has to infer at least: each output pixel once where the models allow it.
  const once = m.inference_once_s ?? m.inference_s;
  const trueCeiling = m.ceiling_true_s ?? m.ceiling_s;
  const extraInference = w.inference - t * once;
  const label = m.inference_once_s === null ? 'a2' : "a2'";
  const perChip = m.inference_once_s === null ? '' : `Inferring whole chips (a2) would take ${(m.inference_s / m.inference_once_s).toFixed(2)} times a2'. `;
  return (
    `Inference alone (${label}) is ${((100 * once) / trueCeiling).toFixed(0)} % of the true ceiling. ${perChip}` +
    `The embedded run used ${(t * m.embedded_s).toFixed(1)} thread-seconds against ${(t * trueCeiling).toFixed(1)} for the true ceiling: ` +
    `reading, preparing and packing took ${more(extraRead)} a1, inference ${more(extraInference)} ${label}, ` +
    `and chip threads were idle for ${idle.toFixed(1)} (process start, planning and product mask, the last jobs of the scene, merge and write).`
  );
}

const sum = (xs: number[]): number => xs.reduce((a, b) => a + b, 0);
/** All the processes' CPU seconds in a run (the bench process only where it serves the files). */
const cpuTotal = (c: CpuAccount, withBench: boolean): number =>
  c.coordinator.main + c.coordinator.others + sum(c.workers.map((w) => w.main + w.others)) + (c.natsServer ?? 0) + (withBench ? c.bench : 0);
const mainSeconds = (c: CpuAccount): number => c.coordinator.main + sum(c.workers.map((w) => w.main));
const threadSeconds = (c: CpuAccount): number => c.coordinator.others + sum(c.workers.map((w) => w.others));

/**
 * CPU seconds of every process in the timed window of each run, and what the cluster and the
 * remote run spent beyond the embedded one: on shared cores, extra CPU is extra time.
 */
function cpuTable(runs: Array<[string, number | null, CpuAccount | null | undefined, boolean]>, cores: number): string[] {
  const rows = runs.filter((r): r is [string, number, CpuAccount, boolean] => r[1] !== null && Boolean(r[2]));
  if (rows.length === 0) return [];
  const pair = (main: number, others: number): string => `${main.toFixed(2)} / ${others.toFixed(2)}`;
  const out = [
    'CPU seconds (user + system, from /proc) of each process from the coordinator\'s spawn to its outputs written; main thread / all other threads (chip, I/O, output and libuv threads):',
    '',
    '| run | wall | coordinator (embedded: the one process) | workers | nats-server | bench process (test http server) | all | of wall x cores |',
    '|---|---|---|---|---|---|---|---|',
    ...rows.map(([label, wall, c, withBench]) => {
      const total = cpuTotal(c, withBench);
      const workers = c.workers.length ? c.workers.map((w) => pair(w.main, w.others)).join(' + ') : '–';
      return `| ${label} | ${fmt(wall, ' s', 2)} | ${pair(c.coordinator.main, c.coordinator.others)} | ${workers} | ${fmt(c.natsServer, ' s', 2)} | ${withBench ? fmt(c.bench, ' s', 2) : '–'} | ${fmt(total, ' s', 1)} | ${fmt((100 * total) / (wall * cores), ' %', 0)} |`;
    }),
    '',
  ];
  const base = rows.find((r) => r[0] === 'embedded')?.[2];
  const notes: string[] = [];
  for (const [label, , c, withBench] of rows) {
    if (!base || c === base) continue;
    const parts = [
      `main threads ${signed(mainSeconds(c) - mainSeconds(base))}`,
      `other threads ${signed(threadSeconds(c) - threadSeconds(base))}`,
      ...(c.natsServer !== null ? [`nats-server ${c.natsServer.toFixed(1)}`] : []),
      ...(withBench ? [`the test server ${c.bench.toFixed(1)}`] : []),
    ];
    notes.push(`${label}: ${signed(cpuTotal(c, withBench) - cpuTotal(base, false))} CPU-s against embedded (${parts.join(', ')})`);
  }
  return notes.length ? [...out, `${notes.join('; ')}.`, ''] : out;
}

const signed = (x: number): string => `${x >= 0 ? '+' : '−'}${Math.abs(x).toFixed(1)}`;

function section(title: string, m: ModelResults | null, remote?: { seconds: number | null; cpu: CpuAccount | null | undefined }): string[] {
  if (!m) return [`## ${title}`, '', '(skipped)', ''];
  return [
    `## ${title}`,
    '',
    ...figures(m),
    '',
    `Where the time goes (embedded run; worker stages summed over chips, in thread-seconds): ${dominates(m)}. ${gap(m)}`,
    '',
    ...breakdownTable(m.breakdown_embedded, m.embedded_s, m.threads),
    '',
    'Cluster, 2 workers:',
    '',
    ...breakdownTable(m.breakdown_cluster, m.cluster_s, m.threads),
    '',
    ...cpuTable(
      [
        ['embedded', m.embedded_s, m.cpu_embedded, false],
        ['cluster, 2 workers', m.cluster_s, m.cpu_cluster, false],
        ['cluster, 1 worker', m.cluster_1w_s, m.cpu_cluster_1w, false],
        ['embedded, remote (f)', remote?.seconds ?? null, remote?.cpu, true],
      ],
      m.threads,
    ),
  ];
}

/** The targets set for this machine (2 cores) and whether this run met them. */
function targets(r: BenchResults): string[] {
  const fpn = r.fpn;
  const mark = (ok: boolean | null): string => (ok === null ? '–' : ok ? 'met' : 'NOT met');
  const atMost = (x: number | null | undefined, limit: number): boolean | null => (x === null || x === undefined ? null : x <= limit);
  const atLeast = (x: number | null | undefined, limit: number): boolean | null => (x === null || x === undefined ? null : x >= limit);
  const flat = r.batch_coordinator_peak_after_scene_mb;
  const rows: [string, string, boolean | null][] = [
    ['efficiency embedded against the true ceiling >= 0.90 (default models)', fmt(r.efficiency_true_embedded, '', 3), atLeast(r.efficiency_true_embedded, 0.9)],
    ['efficiency embedded against the per-chip ceiling (for reference)', fmt(r.efficiency_embedded, '', 3), null],
    ['cluster (2 workers) >= 0.95 of the embedded throughput', fmt(ratio(r.embedded_s ?? null, r.cluster_s ?? null), '', 3), atLeast(ratio(r.embedded_s ?? null, r.cluster_s ?? null), 0.95)],
    ['full scene end to end <= 20 s (embedded)', fmt(r.embedded_s, ' s', 1), r.mode === 'full' ? atMost(r.embedded_s, 20) : null],
    ['merge <= 2 s', fmt(r.merge_s, ' s', 3), atMost(r.merge_s, 2)],
    ['coordinator peak RSS <= 1.5 GB (cluster; batch)', `${fmt(r.coordinator_peak_rss_mb, ' MB', 0)}; ${fmt(r.batch_coordinator_peak_rss_mb, ' MB', 0)}`, atMost(Math.max(r.coordinator_peak_rss_mb ?? 0, r.batch_coordinator_peak_rss_mb ?? 0), 1536)],
    ['coordinator RSS flat across a batch', flat ? flat.map((x) => x.toFixed(0)).join(' / ') + ' MB' : '–', flat ? flat[flat.length - 1]! <= flat[0]! * 1.1 : null],
    ['worker peak RSS <= 1 GB (largest worker)', fmt(r.worker_peak_rss_mb, ' MB', 0), atMost(r.worker_peak_rss_mb, 1024)],
    ['FPN efficiency >= 0.97 (embedded)', fmt(fpn?.efficiency_embedded, '', 3), atLeast(fpn?.efficiency_embedded, 0.97)],
  ];
  return ['## Targets', '', '| target | this run | |', '|---|---|---|', ...rows.map(([t, v, ok]) => `| ${t} | ${v} | ${mark(ok)} |`), ''];
}

export function markdown(r: BenchResults): string {
  const def = r.inference_s !== undefined ? (r as unknown as ModelResults) : null;
  const mc = r.machine;
  return [
    '# Benchmarks',
    '',
    `Generated by \`npm run bench${r.mode === 'quick' ? ' -- --quick' : ''}\` on ${r.generated.slice(0, 10)}; raw figures in \`bench/results/latest.json\`. ${r.note}`,
    '',
    '## Method',
    '',
    '- The scene is the real (10x decimated) 29RKH sample tiled with alternate copies mirrored, so every',
    '  pixel is real data and the files compress like real ones: 10 m bands 10980x10980, 20 m 5490x5490,',
    '  60 m 1830x1830, SCL at 20 m, written tiled 1024 / DEFLATE / predictor 2 like the public COGs',
    '  (bench/scene.ts; cached in bench/cache/). Quick mode uses a 4x4 tiling (4392x4392).',
    '- The ceilings are what an ideal pipeline would take on this machine. a1: every source tile decoded',
    '  once and brought to the 10 m grid on all cores. a2: every whole 512x512 chip through both models',
    "  with the pipeline's onnxruntime settings and thread count, input already in memory, as FarmVibes",
    "  infers them. a2': only each chip's write window through both models, so each output pixel is",
    '  inferred once (models that need whole chips, fixed-shape or strided ones, have no a2\'). The',
    "  per-chip ceiling is a1 + a2, the true one a1 + a2'. Efficiency = ceiling / measured; 1.0 means no",
    '  overhead at all. The pipeline runs each chip over its write window plus the models\' margin where',
    '  their manifests allow it (docs/performance.md), so it can beat the per-chip ceiling.',
    '- b and c spawn the real CLI, compiled as in the Docker image (the bench runs `npm run build`',
    '  first): `run --product-mask scl`, embedded, or `run --nats` against a fresh',
    '  local nats-server with 1 or 2 `worker` processes sharing the cores. Wall time runs from spawning',
    '  the coordinator to its outputs being written, so it includes process start and model preflight;',
    '  cluster workers are started (not timed) before. Medians of several repetitions. The bench and',
    '  everything it starts run with the image\'s `GLIBC_TUNABLES` (allocator settings, docs/performance.md).',
    '- Peak RSS is VmHWM of each process; the batch runs 3 scenes (2 at a time) through one coordinator.',
    '- The stage breakdown comes from the processes\' own /metrics (chip stage histograms, coordinator',
    '  stage histograms).',
    '',
    '## Machine',
    '',
    `| cpu | cores | memory | node | os | load average at start / end |`,
    '|---|---|---|---|---|---|',
    `| ${mc.cpu} | ${mc.cores} | ${mc.memory_gb} GB | ${mc.node} | ${mc.os} | ${mc.loadavg_at_start.join(', ')} / ${(mc.loadavg_at_end ?? []).join(', ')} |`,
    '',
    ...targets(r),
    ...section('Default models (CheapLab-class, bundled)', def, { seconds: r.remote_s ?? null, cpu: r.remote_cpu }),
    '## Merge and memory',
    '',
    '| figure | value |',
    '|---|---|',
    `| d: merge of a full 10980x10980 mask alone (dilation r=5) | ${fmt(r.merge_s, ' s', 3)} |`,
    `| batch of ${r.batch_scenes ?? '–'} scenes, cluster, 2 workers | ${fmt(r.batch_s, ' s', 1)} |`,
    `| f: embedded, read over loopback http (${r.remote_setup ? `${r.remote_setup.latency_ms} ms a request, ${r.remote_setup.bytes_per_second / 1e6} MB/s a response` : '–'}) | ${fmt(r.remote_s ?? null, ' s', 2)}, local/remote ${fmt(r.remote_ratio ?? null, '', 3)}, ${r.remote_requests ?? '–'} requests |`,
    `| batch coordinator peak RSS | ${fmt(r.batch_coordinator_peak_rss_mb, ' MB', 0)} (after each scene: ${(r.batch_coordinator_peak_after_scene_mb ?? []).map((x) => x.toFixed(0)).join(', ')} MB) |`,
    `| batch worker peak RSS (largest) | ${fmt(r.batch_worker_peak_rss_mb, ' MB', 0)} |`,
    '',
    ...section('FPN-class models (random weights, ResNet-18 encoder; `npm run gen-fpn`)', r.fpn),
  ].join('\n');
}
