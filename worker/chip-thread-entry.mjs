// Piscina thread entry: worker threads do not inherit a loader registered with module.register,
// so each thread registers tsx itself before loading the TypeScript task.
import { register } from 'tsx/esm/api';

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

register();
const task = await import('./chip-thread.ts');
export default task.default;
