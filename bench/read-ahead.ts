/**
 * `npx tsx bench/read-ahead.ts [--latency-ms 400] [--reps 2]`
 *
 * Reading ahead in isolation: the 9 chips of the real sample as one-chip jobs on one chip thread,
 * the bands served over loopback http with a latency per request and no tile cache (every job
 * waits for its own requests), handed to the pool two at a time as the worker node does. With one
 * job a thread each job waits for its reads and then infers; with two, the next job's requests
 * are out while the current one infers. Wall seconds, alternating the two settings.
 */
import path from 'node:path';
import { parseArgs } from 'node:util';
import { resolveSource } from '../raster/source.ts';
import { DEFAULT_CLOUD_MODEL, DEFAULT_SHADOW_MODEL } from '../shared/manifest.ts';
import type { TileJob } from '../shared/messages.ts';
import { chipAt, sceneLayout } from '../shared/tiling.ts';
import { startStaticServer } from '../test/helpers/http-server.ts';
import { defaultModelsDir } from '../worker/models.ts';
import { ChipPool } from '../worker/pool.ts';
import { SAMPLE_DIR } from './scene.ts';

async function jobsOver(baseUrl: string): Promise<TileJob[]> {
  const local = await resolveSource(SAMPLE_DIR);
  if (local.kind !== 'bands') throw new Error('the sample is a band folder');
  const source = { ...local, bands: local.bands.map((b) => `${baseUrl}/${path.basename(b)}`), scl: null };
  const layout = sceneLayout(1098, 1098);
  return Array.from({ length: layout.count }, (_, i) => chipAt(layout, i)).map((c) => ({
    type: 'tile-job', v: 1, runKey: 'read-ahead', chips: [{ chipIndex: c.index, read: c.read, write: c.write }], source,
    models: { cloud: DEFAULT_CLOUD_MODEL, shadow: DEFAULT_SHADOW_MODEL }, thresholds: { cloud: 0.3, shadow: 0.2 }, harmonize: false, withProbabilities: false,
  }));
}

async function timeJobs(jobs: TileJob[], jobsPerThread: number): Promise<number> {
  const pool = new ChipPool({ threads: 1, modelsDir: defaultModelsDir(), worker: 'bench', jobsPerThread, tileCacheBytes: 0 });
  try {
    await pool.process(jobs[0]!); // models loaded and files opened before the clock starts
    const t0 = performance.now();
    const inFlight = new Set<Promise<unknown>>();
    for (const j of jobs) {
      while (inFlight.size >= 2) await Promise.race(inFlight);
      const p = pool.process(j).finally(() => inFlight.delete(p));
      inFlight.add(p);
    }
    await Promise.all(inFlight);
    return (performance.now() - t0) / 1000;
  } finally {
    await pool.close();
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { 'latency-ms': { type: 'string', default: '400' }, reps: { type: 'string', default: '2' } } });
  const latencyMs = Number(values['latency-ms']);
  const server = await startStaticServer(SAMPLE_DIR, { latencyMs });
  try {
    const jobs = await jobsOver(server.url);
    for (let rep = 0; rep < Number(values.reps); rep++) {
      for (const n of [1, 2]) console.log(`jobs a thread ${n}: ${jobs.length} one-chip jobs, ${latencyMs} ms a request, no tile cache: ${(await timeJobs(jobs, n)).toFixed(2)} s`);
    }
  } finally {
    await server.close();
  }
}

await main();
