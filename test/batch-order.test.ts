/**
 * Scenes of a batch publish their jobs one after the other (the publish turn): side by side their
 * working sets would compete for the workers' tile caches. Real embedded pool, real sample scene.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, expect, test } from 'vitest';
import { startEmbedded } from '../cli/embedded.ts';
import { FlowGate } from '../coordinator/flow.ts';
import { runScene, type CoordinatorEvent } from '../coordinator/scene-run.ts';
import { DEFAULT_PARAMS } from '../shared/params.ts';
import { defaultModelsDir } from '../worker/models.ts';
import { SAMPLE } from './helpers/cli.ts';

const dir = mkdtempSync(path.join(os.tmpdir(), 'icm-batch-order-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

test('two scenes sharing a publish turn publish one after the other, and both complete', async () => {
  const embedded = startEmbedded({ threads: 2, modelsDir: defaultModelsDir() });
  const turn = new FlowGate(1);
  const published: string[] = [];
  const onEvent = (e: CoordinatorEvent): void => {
    if (e.type === 'chip-published') published.push(e.runKey);
  };
  // Two in flight per scene: without the turn the two publishing loops interleave.
  const run = (productMask: string): ReturnType<typeof runScene> =>
    runScene({ input: SAMPLE, productMask, out: path.join(dir, `${productMask}.tif`) }, embedded.transport, { params: DEFAULT_PARAMS, publishTurn: turn, maxInFlight: 2, chipsPerJob: 1, onEvent });
  try {
    const [a, b] = await Promise.all([run('scl'), run('none')]);
    expect(published.length).toBe(a.chips + b.chips);
    const first = published[0];
    const switchAt = published.findIndex((k) => k !== first);
    expect(switchAt).toBe(first === a.runKey ? a.chips : b.chips);
    expect(published.slice(switchAt).every((k) => k !== first)).toBe(true);
    expect(turn.inUse).toBe(0);
  } finally {
    await embedded.close();
  }
});
