/**
 * `npx tsx bench/model-pair.ts [--models-dir DIR] [--cloud NAME] [--shadow NAME] [--reps N] [--profile [--profile-level L]]`
 *
 * Times the model pair on real 512x512 chips in this thread (onnxruntime-node, one intra-op
 * thread), as the chip threads run it (predictPair: input scaling, one run, activation), then
 * the bare session run of the graph the pair loads, at each graphOptimizationLevel. With
 * --profile, onnxruntime's profiler says which nodes the time goes to.
 */
import { readdir, readFile, rm } from 'node:fs/promises';
import os, { tmpdir } from 'node:os';
import { parseArgs } from 'node:util';
import ort from 'onnxruntime-node';
import { DEFAULT_CLOUD_MODEL, DEFAULT_SHADOW_MODEL } from '../shared/manifest.ts';
import { defaultModelsDir, loadModelPair, predictPair, releasePair, type ModelPair } from '../worker/models.ts';
import { SAMPLE_DIR } from './scene.ts';
import { chipInputs } from './threads.ts';

const SIZE = 512;
const PIXELS = SIZE * SIZE;
const PROFILE_DIR = tmpdir();
const PROFILE_PREFIX = `icm-pair-profile-${process.pid}`;
const LEVELS = ['disabled', 'basic', 'extended', 'all'] as const;

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;

interface Timing {
  wall: number;
  cpu: number;
  cpuMin: number;
}

/**
 * Median wall and CPU milliseconds per call, and the least CPU time. CPU time is this process's
 * (which runs nothing else meanwhile): on a loaded machine wall time mostly measures the wait for
 * a core, and the least CPU time is the one least inflated by other processes sharing the caches.
 */
async function timed(reps: number, fn: (i: number) => Promise<unknown>): Promise<Timing> {
  for (let i = 0; i < 3; i++) await fn(i); // warm-up: arena sized, caches hot
  const wall: number[] = [];
  const cpu: number[] = [];
  for (let i = 0; i < reps; i++) {
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    await fn(i);
    wall.push(performance.now() - t0);
    const c = process.cpuUsage(c0);
    cpu.push((c.user + c.system) / 1000);
  }
  return { wall: median(wall), cpu: median(cpu), cpuMin: Math.min(...cpu) };
}

const mps = (ms: number): string => (PIXELS / ms / 1e3).toFixed(1).padStart(5);
const report = (label: string, t: Timing): void => console.log(
  `${label.padEnd(50)} wall ${t.wall.toFixed(1).padStart(6)} ms, cpu ${t.cpu.toFixed(1).padStart(6)} ms (${mps(t.cpu)} MP/s), least cpu ${t.cpuMin.toFixed(1).padStart(6)} ms (${mps(t.cpuMin)} MP/s)`);

/** The bytes of the graph the pair runs, and its feeds (input name -> scale). */
async function pairGraph(pair: ModelPair, dir: string, cloud: string, shadow: string): Promise<{ bytes: Uint8Array; scales: Map<string, number> }> {
  if (pair.kind !== 'merged') throw new Error(`the pair runs as two sessions (${pair.reason}); bare-session timing needs one graph`);
  const { mergeModelPair } = await import('../worker/onnx-pair.ts');
  // As worker/models.ts merges them: one shared input when both models scale the DN alike.
  const shareInput = pair.cloud.manifest.inputScale === pair.shadow.manifest.inputScale;
  const bytes = mergeModelPair(await readFile(`${dir}/${cloud}`), await readFile(`${dir}/${shadow}`), { shareInput });
  return { bytes, scales: new Map([[pair.cloud.inputName, pair.cloud.manifest.inputScale], [pair.shadow.inputName, pair.shadow.manifest.inputScale]]) };
}

function feedsFor(scales: Map<string, number>, dn: Float32Array): Record<string, InstanceType<typeof ort.Tensor>> {
  const feeds: Record<string, InstanceType<typeof ort.Tensor>> = {};
  for (const [name, scale] of scales) feeds[name] = new ort.Tensor('float32', scale === 1 ? dn : dn.map((v) => v * scale), [1, 12, SIZE, SIZE]);
  return feeds;
}

const sessionOptions = (level: (typeof LEVELS)[number], profile = false): InferenceSessionOptions => ({
  graphOptimizationLevel: level, intraOpNumThreads: 1, executionMode: 'sequential', enableCpuMemArena: true, enableMemPattern: false,
  ...(profile ? { enableProfiling: true, profileFilePrefix: `${PROFILE_DIR}/${PROFILE_PREFIX}` } : {}),
});
type InferenceSessionOptions = Parameters<typeof ort.InferenceSession.create>[1];

interface ProfileEvent { cat: string; name: string; dur: number; args?: { op_name?: string } }

/** Mean microseconds per chip of each node kernel, from onnxruntime's JSON profile. */
async function profileNodes(bytes: Uint8Array, feeds: Record<string, InstanceType<typeof ort.Tensor>>, runs: number, level: (typeof LEVELS)[number]): Promise<void> {
  const session = await ort.InferenceSession.create(bytes, sessionOptions(level, true));
  for (let i = 0; i < runs; i++) await session.run(feeds);
  session.endProfiling();
  await session.release();
  // onnxruntime-node does not return the profile's name: it is the prefix plus a timestamp.
  const name = (await readdir(PROFILE_DIR)).find((f) => f.startsWith(PROFILE_PREFIX) && f.endsWith('.json'));
  if (!name) throw new Error(`no onnxruntime profile in ${PROFILE_DIR}`);
  const file = `${PROFILE_DIR}/${name}`;
  const events = JSON.parse(await readFile(file, 'utf8')) as ProfileEvent[];
  await rm(file, { force: true });
  const perNode = new Map<string, number>();
  for (const e of events) {
    if (e.cat !== 'Node' || !e.name.endsWith('_kernel_time')) continue;
    const key = `${e.args?.op_name ?? '?'} ${e.name.replace(/_kernel_time$/, '')}`;
    perNode.set(key, (perNode.get(key) ?? 0) + e.dur);
  }
  const rows = [...perNode].map(([k, us]) => [k, us / runs] as const).sort((a, b) => b[1] - a[1]);
  const total = rows.reduce((s, [, us]) => s + us, 0);
  console.log(`\nprofile (level ${level}, ${runs} runs): ${(total / 1000).toFixed(1)} ms/chip in ${rows.length} kernels`);
  for (const [k, us] of rows.slice(0, 25)) console.log(`  ${(us / 1000).toFixed(2).padStart(7)} ms  ${((100 * us) / total).toFixed(1).padStart(5)} %  ${k}`);
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: {
    'models-dir': { type: 'string', default: defaultModelsDir() }, cloud: { type: 'string', default: DEFAULT_CLOUD_MODEL },
    shadow: { type: 'string', default: DEFAULT_SHADOW_MODEL }, reps: { type: 'string', default: '15' }, profile: { type: 'boolean', default: false },
    'profile-level': { type: 'string', default: 'extended' },
  } });
  const dir = values['models-dir']!;
  const reps = Number(values.reps);
  const chips = await chipInputs(SAMPLE_DIR);
  console.log(`onnxruntime-node ${ort.env.versions?.common ?? '?'}, 1 intra-op thread, ${chips.length} real ${SIZE}x${SIZE} chips of 29RKH, ${reps} runs each, per chip; load average ${os.loadavg()[0]!.toFixed(1)}`);
  const pair = await loadModelPair(values.cloud!, values.shadow!, dir);
  const buffers = { cloud: new Float32Array(PIXELS), shadow: new Float32Array(PIXELS), cloudInput: new Float32Array(12 * PIXELS), shadowInput: new Float32Array(12 * PIXELS) };
  report(`predictPair (${pair.kind}, as the chip threads)`, await timed(reps, (i) => predictPair(pair, chips[i % chips.length]!, SIZE, SIZE, buffers)));
  const graph = pair.kind === 'merged' ? await pairGraph(pair, dir, values.cloud!, values.shadow!) : null;
  await releasePair(pair);
  if (!graph) return;
  const feeds = chips.map((dn) => feedsFor(graph.scales, dn));
  for (const level of LEVELS) {
    const session = await ort.InferenceSession.create(graph.bytes, sessionOptions(level));
    report(`session.run only, graphOptimizationLevel ${level}`, await timed(reps, (i) => session.run(feeds[i % feeds.length]!)));
    await session.release();
  }
  if (values.profile) await profileNodes(graph.bytes, feeds[0]!, reps, values['profile-level'] as (typeof LEVELS)[number]);
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.stack : err);
  process.exitCode = 1;
});
