/**
 * `npm run evaluate [-- --models-dir DIR --cloud-model NAME --shadow-model NAME --json]`:
 * prints the evaluation table (held-out human labels, agreement with Sen2Cor SCL, baselines).
 */
import { parseArgs } from 'node:util';
import { evaluateModels, formatEvalTable } from './lib/evaluate.ts';

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      'models-dir': { type: 'string' },
      'cloud-model': { type: 'string' },
      'shadow-model': { type: 'string' },
      json: { type: 'boolean', default: false },
    },
  });
  const report = await evaluateModels({
    modelsDir: values['models-dir'] ?? process.env.ICM_MODELS_DIR,
    cloudModel: values['cloud-model'],
    shadowModel: values['shadow-model'],
  });
  process.stdout.write(values.json ? `${JSON.stringify(report, null, 2)}\n` : `${formatEvalTable(report)}\n`);
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exitCode = 1;
});
