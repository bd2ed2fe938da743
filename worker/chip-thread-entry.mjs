// Piscina thread entry. In the compiled build (dist/worker/, beside chip-thread.js) it loads the
// JavaScript; in the sources, worker threads do not inherit a loader registered with
// module.register, so each thread registers tsx itself before loading the TypeScript task.
import { existsSync } from 'node:fs';

// geotiff.js imports the `web-worker` package, whose Node build assumes any non-main thread was
// started by itself and crashes in a Piscina thread unless a global Worker exists. We never use
// geotiff's decoder pool, so a Worker that refuses to start is enough to make it step aside.
if (typeof globalThis.Worker !== 'function') {
  globalThis.Worker = class UnusedWorker {
    constructor() {
      throw new Error('geotiff decoder pools are not used in chip threads');
    }
  };
}

const compiled = existsSync(new URL('./chip-thread.js', import.meta.url));
if (!compiled) (await import('tsx/esm/api')).register();
const taskModule = compiled ? './chip-thread.js' : './chip-thread.ts';
const task = await import(taskModule);
export default task.default;
export const open = task.open;
