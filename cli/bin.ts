/** The compiled entry (dist/cli/bin.js): bin/improve-cloud-mask.mjs runs it when tsx is absent. */
import { exitWhenDone, main } from './main.ts';

exitWhenDone(await main(process.argv.slice(2)));
