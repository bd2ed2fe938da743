/**
 * The archive tier's metrics, read from the scene queue at scrape time: scenes per archive and
 * state, coordinators alive, scene-queue lag. Every coordinator exports the same values (they
 * come from the shared records): dashboards take max() across coordinators, never sum().
 */
import { Gauge, type Registry } from 'prom-client';
import { COORDINATOR_METRICS as M } from '../shared/metric-names.ts';
import { countScenes, SCENE_STATES } from '../shared/scene-jobs.ts';
import type { SceneQueue } from '../shared/transport.ts';

/** Reading every record costs a KV get each: at most once per this many ms. */
const REFRESH_MS = 10_000;

export function createArchiveMetrics(registry: Registry, queue: SceneQueue): void {
  const registers = [registry];
  let last = 0;
  let cached: Map<string, ReturnType<typeof countScenes>> = new Map();
  const counts = async (): Promise<typeof cached> => {
    if (Date.now() - last < REFRESH_MS) return cached;
    last = Date.now();
    const next = new Map<string, ReturnType<typeof countScenes>>();
    for (const a of await queue.archives()) next.set(a, countScenes(await queue.records(a)));
    return (cached = next);
  };
  new Gauge({
    name: M.archiveScenes,
    help: 'Scenes of each archive by state (queued, running, done, skipped, failed), from the scene records.',
    labelNames: ['archive', 'state'],
    registers,
    async collect() {
      const all = await counts().catch(() => cached);
      for (const [archive, c] of all) for (const state of SCENE_STATES) this.set({ archive, state }, c[state]);
    },
  });
  new Gauge({
    name: M.coordinatorsAlive,
    help: 'Coordinators that said they were alive in the last 30 s.',
    registers,
    async collect() {
      const ids = await queue.coordinators().catch(() => null);
      if (ids) this.set(ids.length);
    },
  });
  new Gauge({
    name: M.sceneQueueLag,
    help: 'Scene jobs waiting for a coordinator (all archives).',
    registers,
    async collect() {
      const n = await queue.lag().catch(() => null);
      if (n !== null) this.set(n);
    },
  });
}
