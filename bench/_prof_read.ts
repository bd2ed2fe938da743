import path from 'node:path';
import { openScene } from '../raster/scene-reader.ts';
import { TileCache, createTileCacheHandle } from '../raster/tile-cache.ts';
import { sceneLayout } from '../shared/tiling.ts';
import { nextGroup } from '../coordinator/scene-run.ts';
import { unionWindow } from '../shared/messages.ts';
const dir = process.argv[2]!;
const names = ['B01','B02','B03','B04','B05','B06','B07','B08','B8A','B09','B11','B12'];
const cache = new TileCache(createTileCacheHandle({ bytes: Number(process.env.CACHE_MB ?? 256) * 2 ** 20 }));
const scene = await openScene({ kind: 'bands', bands: names.map((n) => path.join(dir, `${n}.tif`)), metadata: { processingBaseline: null, boaOffsetApplied: null, id: 'x' } } as any, { tileCache: cache });
const layout = sceneLayout(scene.geo.width, scene.geo.height);
let start = 0; let jobs = 0; const t0 = performance.now(); let px = 0;
let buf = new Uint16Array(0);
while (start < layout.count) {
  const g = nextGroup(layout, () => false, start, 4); start = g.next;
  const u = unionWindow(g.chips.map((c) => ({ chipIndex: c.index, read: c.read, write: c.write })));
  const n = 12 * u.width * u.height; if (buf.length < n) buf = new Uint16Array(Math.ceil(n * 1.25));
  await scene.readWindow(u, undefined, buf.subarray(0, n)); jobs++; px += u.width * u.height;
}
console.log(`${jobs} jobs, ${(performance.now() - t0) / 1000} s, ${px / 1e6} Mpx union, scene ${scene.geo.width}x${scene.geo.height}`, JSON.stringify(cache.stats));
