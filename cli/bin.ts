/** The compiled entry (dist/cli/bin.js): bin/improve-cloud-mask.mjs runs it when tsx is absent. */
import { main } from './main.ts';

process.exitCode = await main(process.argv.slice(2));
