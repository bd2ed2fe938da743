/**
 * The files a run will write, named once: checked before any work (an existing one is replaced
 * only with --overwrite) and listed in the summary.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import type { SceneTask } from '../coordinator/scene-run.ts';
import { itemPathFor } from '../coordinator/stac.ts';
import { CloudMaskError } from '../shared/errors.ts';

/** File names `--probabilities DIR` writes (raster/ writes them under these names). */
export const PROBABILITY_FILES = ['cloud_probability.tif', 'shadow_probability.tif'] as const;

export interface PlannedOutput {
  /** The option that asked for it. */
  option: 'out' | 'classes' | 'probabilities' | 'quicklook';
  file: string;
}

export function plannedOutputs(task: Pick<SceneTask, 'out' | 'classes' | 'probabilities' | 'quicklook'>): PlannedOutput[] {
  // The mask's STAC item and the classes' class names are outputs too.
  const outputs: PlannedOutput[] = [{ option: 'out', file: task.out }, { option: 'out', file: itemPathFor(task.out) }];
  if (task.classes) outputs.push({ option: 'classes', file: task.classes }, { option: 'classes', file: `${task.classes}.aux.xml` });
  if (task.probabilities) for (const f of PROBABILITY_FILES) outputs.push({ option: 'probabilities', file: path.join(task.probabilities, f) });
  if (task.quicklook) outputs.push({ option: 'quicklook', file: task.quicklook });
  return outputs;
}

/** Refuses, before any work, to replace an existing output unless `overwrite`. */
export function checkOutputsFree(outputs: PlannedOutput[], overwrite: boolean): void {
  if (overwrite) return;
  const taken = outputs.filter((o) => existsSync(o.file));
  if (taken.length === 0) return;
  const names = taken.map((o) => `${o.file} (--${o.option})`).join(', ');
  throw new CloudMaskError('OUTPUT_FAILED', `${names} already exist${taken.length === 1 ? 's' : ''}; pass --overwrite to replace ${taken.length === 1 ? 'it' : 'them'}`);
}
