// Piscina thread entry of the output threads (coordinator/output-pool.ts): the compiled build's
// JavaScript beside it, or the TypeScript sources through tsx, as worker/chip-thread-entry.mjs.
import { existsSync } from 'node:fs';

// geotiff.js (the quick-look reads the scene) needs a global Worker in a non-main thread; see
// worker/chip-thread-entry.mjs.
if (typeof globalThis.Worker !== 'function') {
  globalThis.Worker = class UnusedWorker {
    constructor() {
      throw new Error('geotiff decoder pools are not used in output threads');
    }
  };
}

const compiled = existsSync(new URL('./output-thread.js', import.meta.url));
if (!compiled) (await import('tsx/esm/api')).register();
const task = await import(compiled ? './output-thread.js' : './output-thread.ts');
export default task.default;
