/**
 * The remote-read row: the bench scene served over loopback http by the test server with a
 * latency per request and a pace per response (as object storage answers), read by an embedded
 * run through a STAC item naming the band URLs. Compared with the same run on local files, it
 * shows how much of the waiting the worker hides behind compute.
 */
import { mkdir, rm, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { BAND_NAMES } from '../raster/bands.ts';
import { startStaticServer } from '../test/helpers/http-server.ts';
import { runEmbedded, type ModelSet, type RunResult } from './runners.ts';
import { CACHE_DIR, SCENE_FILES, type BenchScene } from './scene.ts';

export interface RemoteSetup {
  /** Wait before each answer, ms. */
  latencyMs: number;
  /** Pace of each response body, bytes per second. */
  bytesPerSecond: number;
}

export const REMOTE_DEFAULT: RemoteSetup = { latencyMs: 100, bytesPerSecond: 100e6 };

export interface RemoteResult extends RunResult {
  requests: number;
}

/** An embedded run of the scene read over http (see the module comment). */
export async function runRemote(scene: BenchScene, models: ModelSet, threads: number, setup: RemoteSetup = REMOTE_DEFAULT): Promise<RemoteResult> {
  const root = path.join(CACHE_DIR, 'remote');
  await rm(root, { recursive: true, force: true });
  await mkdir(root, { recursive: true });
  for (const f of SCENE_FILES) await symlink(path.join(scene.dir, `${f}.tif`), path.join(root, `${f}.tif`));
  const server = await startStaticServer(root, setup);
  try {
    const assets: Record<string, { href: string }> = {};
    for (const b of [...BAND_NAMES, 'SCL']) assets[b] = { href: `${server.url}/${b}.tif` };
    await writeFile(path.join(root, 'item.json'), JSON.stringify({ type: 'Feature', stac_version: '1.0.0', id: 'bench-remote', properties: {}, assets }));
    const r = await runEmbedded({ ...scene, dir: `${server.url}/item.json` }, models, threads);
    return { ...r, requests: server.requests.length };
  } finally {
    await server.close();
  }
}
