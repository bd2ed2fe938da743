/** `improve-cloud-mask describe [--json]`: the workflow as text, or as one JSON document. */
import { describeWorkflow, PARAMETERS, WORKFLOW_IO } from '../shared/params.ts';
import type { Flags } from './options.ts';

/** The JSON form: what a program needs to build a call (names, types, defaults, descriptions). */
export function describeJson(): Record<string, unknown> {
  return {
    workflow: 'improve_cloud_mask',
    farmvibes_workflow: 'data_ingestion/sentinel2/improve_cloud_mask',
    sources: WORKFLOW_IO.sources,
    sinks: WORKFLOW_IO.sinks,
    tasks: WORKFLOW_IO.tasks,
    parameters: Object.fromEntries(
      Object.entries(PARAMETERS).map(([name, spec]) => [name, { type: spec.type, default: spec.default, farmvibes: spec.farmvibes, description: spec.description }]),
    ),
    fixed: WORKFLOW_IO.fixed,
  };
}

export async function describeCommand(flags: Flags): Promise<number> {
  process.stdout.write(flags.json ? `${JSON.stringify(describeJson(), null, 2)}\n` : `${describeWorkflow()}\n`);
  return 0;
}
