/**
 * The chip pool on the real 29RKH scene: one thread without the tile cache and two threads
 * sharing it give the same bits, with and without probabilities asked for, and so do threads
 * holding two jobs (the next read during inference), also over http; prepare opens a remote
 * scene in the threads ahead of its jobs.
 */
import path from 'node:path';
import { afterEach, describe, expect, test } from 'vitest';
import { resolveSource } from '../raster/source.ts';
import type { SceneSource } from '../raster/types.ts';
import { DEFAULT_CLOUD_MODEL, DEFAULT_SHADOW_MODEL } from '../shared/manifest.ts';
import type { TileJob, TileResult } from '../shared/messages.ts';
import { chipAt, sceneLayout } from '../shared/tiling.ts';
import { defaultModelsDir } from '../worker/models.ts';
import { ChipPool, type ChipPoolOptions } from '../worker/pool.ts';
import { SAMPLE } from './helpers/cli.ts';
import { startStaticServer } from './helpers/http-server.ts';

const pools: ChipPool[] = [];
afterEach(async () => {
  await Promise.all(pools.splice(0).map((p) => p.close()));
});

/** The 9 chips of the 1098x1098 sample as jobs of up to 2 chips of one row. */
/** The sample's bands, or the same files under `baseUrl`. */
async function sampleSource(baseUrl?: string): Promise<SceneSource> {
  const source = await resolveSource(SAMPLE);
  if (!baseUrl || source.kind !== 'bands') return source;
  const url = (p: string | null): string | null => (p ? `${baseUrl}/${path.basename(p)}` : null);
  return { ...source, bands: source.bands.map((b) => url(b)!), scl: url(source.scl) };
}

async function sampleJobs(withProbabilities: boolean, baseUrl?: string): Promise<TileJob[]> {
  const source = await sampleSource(baseUrl);
  const layout = sceneLayout(1098, 1098);
  const jobs: TileJob[] = [];
  for (let row = 0; row < layout.rows.length; row++) {
    for (let col = 0; col < layout.cols.length; col += 2) {
      const chips = [col, col + 1].filter((c) => c < layout.cols.length).map((c) => chipAt(layout, row * layout.cols.length + c));
      jobs.push({
        type: 'tile-job',
        v: 1,
        runKey: 'pool-test',
        chips: chips.map((c) => ({ chipIndex: c.index, read: c.read, write: c.write })),
        source,
        models: { cloud: DEFAULT_CLOUD_MODEL, shadow: DEFAULT_SHADOW_MODEL },
        thresholds: { cloud: 0.3, shadow: 0.2 },
        harmonize: false,
        withProbabilities,
      });
    }
  }
  return jobs;
}

async function run(options: Partial<ChipPoolOptions>, withProbabilities = false): Promise<TileResult[]> {
  return (await runPool(options, withProbabilities)).results;
}

async function runPool(options: Partial<ChipPoolOptions>, withProbabilities = false, baseUrl?: string): Promise<{ results: TileResult[]; pool: ChipPool }> {
  const pool = new ChipPool({ threads: 2, modelsDir: defaultModelsDir(), worker: 'test', ...options });
  pools.push(pool);
  const results = (await Promise.all((await sampleJobs(withProbabilities, baseUrl)).map((j) => pool.process(j)))).flat();
  return { results: results.sort((a, b) => a.chipIndex - b.chipIndex), pool };
}

const bits = (rs: TileResult[]): string[] => rs.map((r) => `${r.chipIndex}:${Buffer.from(r.cloud).toString('hex')}:${Buffer.from(r.shadow).toString('hex')}:${Buffer.from(r.nodata).toString('hex')}`);

describe('chip pool', () => {
  test('two threads sharing the tile cache and one thread without it give the same bits', async () => {
    const two = await run({});
    expect(two).toHaveLength(9);
    const single = await run({ threads: 1, tileCacheBytes: 0 });
    expect(bits(single)).toEqual(bits(two));
    // The bundled models merge: one onnxruntime run per chip does both.
    for (const r of two) {
      expect(r.timings.inferenceMs).toBeGreaterThan(0);
      expect(r.timings.cloudMs).toBeNull();
      expect(r.timings.shadowMs).toBeNull();
    }
  });

  test('probabilities are the same with one thread and with two', async () => {
    const two = await run({}, true);
    const single = await run({ threads: 1, tileCacheBytes: 0 }, true);
    for (let i = 0; i < two.length; i++) {
      expect(Buffer.from(single[i]!.cloudProb!.buffer).equals(Buffer.from(two[i]!.cloudProb!.buffer))).toBe(true);
      expect(Buffer.from(single[i]!.shadowProb!.buffer).equals(Buffer.from(two[i]!.shadowProb!.buffer))).toBe(true);
    }
  });

  test('prepare: the threads open a remote scene before its first job, and no thread opens it twice; same bits', async () => {
    const local = await run({});
    const server = await startStaticServer(SAMPLE);
    try {
      const pool = new ChipPool({ threads: 2, modelsDir: defaultModelsDir(), worker: 'test' });
      pools.push(pool);
      const source = await sampleSource(server.url);
      if (source.kind !== 'bands') throw new Error('the sample is a folder of bands');
      // Opening a scene reads each band's first 64 KiB (tiff-file.ts's probe), once per thread.
      const probes = (): number => server.requests.filter((r) => / bytes=0-65535$/.test(r)).length;
      await pool.prepare(source);
      const opened = probes();
      expect(opened).toBeGreaterThanOrEqual(source.bands.length);
      expect(opened % source.bands.length).toBe(0);
      const results = (await Promise.all((await sampleJobs(false, server.url)).map((j) => pool.process(j)))).flat();
      expect(bits(results.sort((a, b) => a.chipIndex - b.chipIndex))).toEqual(bits(local));
      // A thread that opened the scene ahead reads no header again; one that got no open task opens it with its first job.
      expect(probes()).toBe(2 * source.bands.length);
    } finally {
      await server.close();
    }
  });

  test('threads holding two jobs (the next read during inference) give the same bits, also over http; reads are counted', async () => {
    const one = await runPool({ threads: 1, jobsPerThread: 1, tileCacheBytes: 0 });
    // 9 chips in 6 jobs; without a cache each job decodes every tile it touches.
    expect(one.pool.io.decodes).toBeGreaterThan(6 * 12);
    expect(one.pool.io.httpRequests.ok).toBe(0);
    const server = await startStaticServer(SAMPLE);
    try {
      const remote = await runPool({ threads: 1, jobsPerThread: 2 }, false, server.url);
      expect(bits(remote.results)).toEqual(bits(one.results));
      expect(remote.pool.io.httpRequests.ok).toBeGreaterThan(0);
      expect(remote.pool.io.httpBytes).toBeGreaterThan(0);
      // The shared cache: each of the sample's tiles decoded about once.
      expect(remote.pool.io.decodes).toBeLessThan(one.pool.io.decodes);
    } finally {
      await server.close();
    }
  });
});
