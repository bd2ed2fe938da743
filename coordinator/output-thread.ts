/**
 * The output thread's task: merge and write one scene's outputs (writeOutputs) off the
 * coordinator's event loop. Everything arrives as plain data (the stitched planes are moved, not
 * copied); the scene is reopened here only if a quick-look needs its pixels. Stage times and
 * notes come back with the result, since callbacks cannot cross threads.
 */
import { openScene } from '../raster/scene-reader.ts';
import type { HttpOptions } from '../raster/http.ts';
import type { GeoInfo, SceneMetadata, SceneSource } from '../raster/types.ts';
import { toErrorData, type ErrorData } from '../shared/errors.ts';
import type { WorkflowParams } from '../shared/params.ts';
import { writeOutputs, type OutputMeta, type OutputPaths } from './outputs.ts';
import type { Stitched } from './stitch.ts';

export interface OutputTask {
  task: OutputPaths;
  stitched: Stitched;
  scene: { geo: GeoInfo; metadata: SceneMetadata; source: SceneSource; http?: HttpOptions };
  params: WorkflowParams;
  meta: Omit<OutputMeta, 'onStage' | 'onNote'>;
}

export type OutputReply =
  | { ok: true; cloudFraction: number; stages: Array<['merge' | 'write', number]>; notes: string[] }
  | { ok: false; error: ErrorData };

export default async function writeOutputsTask(t: OutputTask): Promise<OutputReply> {
  const stages: Array<['merge' | 'write', number]> = [];
  const notes: string[] = [];
  const { geo, metadata, source, http } = t.scene;
  const scene = {
    geo,
    metadata,
    source,
    withReader: async <T>(fn: (r: Awaited<ReturnType<typeof openScene>>) => Promise<T>): Promise<T> => {
      const reader = await openScene(source, { http });
      try {
        return await fn(reader);
      } finally {
        await reader.close().catch(() => {});
      }
    },
  };
  try {
    const { cloudFraction } = await writeOutputs(t.task, t.stitched, scene, t.params, {
      ...t.meta,
      onStage: (stage, seconds) => stages.push([stage, seconds]),
      onNote: (message) => notes.push(message),
    });
    return { ok: true, cloudFraction, stages, notes };
  } catch (err) {
    return { ok: false, error: toErrorData(err) };
  }
}
